"""``OpenVLAForActionPrediction``: the VLA used by training, evaluation, serving and the Hugging Face format.

One implementation (DESIGN §3, §10): ``vision_backbone`` (timm ViTs) → ``projector`` → ``language_model``
(a transformers causal LM, Llama for OpenVLA). The multimodal sequence is [BOS] + projected patches + the rest
of the prompt; the attention mask is set at the patch positions and the labels are −100 there.

This module holds the network: construction, embeddings, the multimodal sequence and the training ``forward``.
Decoding (``predict_action`` and the OFT options' parallel decoding) lives in ``openvla.model.decoding``, the
``norm_stats`` lookups (``unnorm_key``) in ``openvla.model.norm_stats``; the class combines them.

OpenVLA-OFT's options (``openvla.model.action_heads``, all off by default): a chunk of ``action_chunk`` K actions
per query (token by token, or all K·D slots in one forward with ``parallel_decoding``), a continuous L1 head
(``action_head="l1"``), and a proprio token after the patches (``use_proprio``). Parallel training and inference
build the same sequence, [BOS] + patches (+ proprio) + prompt + "▁" + K·D slots, left-aligned so the slots sit at
the end of every row. Several cameras (``num_images_in_input`` N) put N·P patches where one image's P were; FiLM
(``use_film``) conditions the ViTs on the mean embedding of the prompt (``openvla.model.vision``).

Run ``python -c "from openvla.model import build_vla, get_model_config; print(build_vla(get_model_config('tiny')))"``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from openvla.model.action_heads import ActionQueries, L1ActionHead, ProprioProjector
from openvla.model.configuration import OpenVLAConfig
from openvla.model.decoding import ActionDecodingMixin
from openvla.model.norm_stats import NormStatsMixin, UnnormKeyError
from openvla.model.outputs import IGNORE_INDEX, OpenVLAOutput
from openvla.model.projector import PrismaticProjector
from openvla.model.vision import LayerScale, PrismaticVisionBackbone, ZeroLinear

logger = logging.getLogger(__name__)

__all__ = ["IGNORE_INDEX", "OpenVLAForActionPrediction", "OpenVLAOutput", "UnnormKeyError", "build_vla"]


class OpenVLAForActionPrediction(ActionDecodingMixin, NormStatsMixin, PreTrainedModel):
    config_class = OpenVLAConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["PrismaticProjector", "Block"]
    _skip_keys_device_placement = "cache"
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__(config)
        self.vision_backbone = PrismaticVisionBackbone(
            config.use_fused_vision_backbone,
            config.timm_model_ids,
            config.image_sizes,
            config.timm_override_act_layers,
            config.timm_model_kwargs,
            num_images=int(getattr(config, "num_images_in_input", 1) or 1),
            film_llm_dim=config.text_config.hidden_size if getattr(config, "use_film", False) else None,
        )
        self.projector = PrismaticProjector(
            config.use_fused_vision_backbone, self.vision_backbone.embed_dim, config.text_config.hidden_size
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        hidden = config.text_config.hidden_size
        # OFT options: created only when enabled, so a default model has exactly the official parameters.
        if config.parallel_decoding:
            self.action_queries = ActionQueries(config.num_action_slots, hidden)
        if config.use_proprio:
            self.proprio_projector = ProprioProjector(config.proprio_dim, hidden)
        if config.action_head == "l1":
            self.l1_head = L1ActionHead(hidden, config.action_dim, config.l1_head_blocks)
        self._action_tokenizer = None
        self.post_init()

    # ------------------------------------------------------------------------------------------------------------
    # transformers plumbing
    # ------------------------------------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        # Linear/Embedding/norms as transformers' default; our LayerScale keeps the value timm gave it (1e-5 for
        # DINOv2). timm's own parameters (cls/reg tokens, pos_embed, attention-pool latent) keep timm's init.
        if isinstance(module, LayerScale):
            return
        if isinstance(module, ActionQueries):
            nn.init.normal_(module.weight, std=0.02)
            return
        if isinstance(module, ZeroLinear):  # FiLM's projections: FiLM starts as the identity
            module.reset_parameters()
            return
        super()._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Checkpoint the LLM decoder layers and the ViT blocks."""
        self.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)
        self.vision_backbone.featurizer.set_grad_checkpointing(True)
        if self.config.use_fused_vision_backbone:
            self.vision_backbone.fused_featurizer.set_grad_checkpointing(True)

    def fsdp_wrap_classes(self) -> set[type[nn.Module]]:
        """Module classes to auto-wrap with FSDP: ViT blocks, LLM decoder layers and the projector (DESIGN §7)."""
        classes: set[type[nn.Module]] = {type(self.projector), type(self.language_model.get_decoder().layers[0])}
        classes.add(type(self.vision_backbone.featurizer.blocks[0]))
        if self.config.use_fused_vision_backbone:
            classes.add(type(self.vision_backbone.fused_featurizer.blocks[0]))
        return classes

    def unused_parameter_names(self) -> list[str]:
        """Parameters that never get a gradient (ViT last block, final norm, heads); DDP needs to know them."""
        names = []
        prefixes = ["vision_backbone.featurizer"] + (
            ["vision_backbone.fused_featurizer"] if self.config.use_fused_vision_backbone else []
        )
        for prefix in prefixes:
            vit = self.get_submodule(prefix)
            last = len(vit.blocks) - 1
            for name, _ in vit.named_parameters():
                if name.startswith(f"blocks.{last}.") or not (
                    name.startswith("blocks.")
                    or name.split(".")[0] in {"cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre"}
                ):
                    names.append(f"{prefix}.{name}")
        if self.config.action_head == "l1":  # the L1 head reads hidden states: the LM head is never used
            head = self.get_output_embeddings()
            if head.weight is not self.get_input_embeddings().weight:
                names += [f"language_model.{n}" for n, p in self.language_model.named_parameters() if p is head.weight]
        return names

    # ------------------------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------------------------
    def project_images(self, pixel_values: torch.Tensor, language: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 3·n·N, S, S] → projected patch embeddings [B, N·P, H]; ``language`` [B, H] feeds FiLM."""
        dtype = self.projector.fc1.weight.dtype
        return self.projector(self.vision_backbone(pixel_values.to(dtype), language))

    @staticmethod
    def language_embedding(
        embeds: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """FiLM's language vector: the mean input embedding of the prompt tokens, [B, H].

        Padding and labelled (action, EOS) positions are excluded, so training rows (prompt + "▁" + action tokens)
        and inference prompts (prompt + "▁") give the same vector.
        """
        keep = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        if attention_mask is not None:
            keep &= attention_mask.bool()
        if labels is not None:
            keep &= labels == IGNORE_INDEX
        weights = keep.to(embeds.dtype)[..., None]
        return (embeds * weights).sum(1) / weights.sum(1).clamp(min=1)

    def _multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Embeddings, mask and labels of [BOS] + patches (+ proprio token) + rest, and the projected patches."""
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, H)
        language = self.language_embedding(embeds, attention_mask, labels) if self.config.use_film else None
        patches = self.project_images(pixel_values, language)  # (B, N·P, H)
        inserted = patches.to(embeds.dtype)
        if self.config.use_proprio:
            if proprio is None:
                raise ValueError("this model has use_proprio=True: pass proprio (the normalized state, [B, P])")
            proprio = proprio.to(device=embeds.device, dtype=self.proprio_projector.fc1.weight.dtype)
            inserted = torch.cat(
                [inserted, self.proprio_projector(proprio.reshape(len(proprio), -1)).to(embeds.dtype)], 1
            )
        embeds = torch.cat([embeds[:, :1], inserted, embeds[:, 1:]], dim=1)
        bsz, n_patches = inserted.shape[:2]
        if attention_mask is not None:
            ones = attention_mask.new_ones(bsz, n_patches)
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        if labels is not None:
            ignore = labels.new_full((bsz, n_patches), IGNORE_INDEX)
            labels = torch.cat([labels[:, :1], ignore, labels[:, 1:]], dim=1)
        return embeds, attention_mask, labels, patches

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: Any = None,
        position_ids: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_projector_features: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        proprio: torch.Tensor | None = None,
        action_labels: torch.LongTensor | None = None,
        actions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> OpenVLAOutput | tuple:
        """Causal-LM forward over [BOS] + patches + prompt (inputs right-padded, BOS first).

        Without ``pixel_values`` (or when continuing from a ``cache``) this is the plain LLM. ``past_key_values``
        (OpenVLA's name) is accepted as an alias of ``cache``.

        ``logits_to_keep`` = K > 0 computes logits for the last K positions only (transformers' meaning) and, with
        ``labels``, the same loss as the full forward as long as every labelled position lies in the last K − 1
        (``min_logits_to_keep(labels)`` gives the smallest such K). On CPU the 32k-vocabulary head dominates a
        tiny model's step, so this makes training several times cheaper.

        With ``parallel_decoding`` and ``pixel_values`` this is the one-pass chunk forward (``parallel_forward``):
        ``input_ids`` are prompts only, ``action_labels`` [B, K·D] (tokens head) or ``actions`` [B, K, D]
        (normalized, L1 head) give the loss, and ``proprio`` [B, P] (normalized) feeds the proprio token.
        """
        if self.config.parallel_decoding and pixel_values is not None and cache is None:
            return self.parallel_forward(
                input_ids, pixel_values, attention_mask, proprio=proprio, action_labels=action_labels, actions=actions
            )
        cache = kwargs.pop("past_key_values", None) if cache is None else cache
        for name, flag in (("output_attentions", output_attentions), ("output_hidden_states", output_hidden_states)):
            if flag is not None:
                kwargs[name] = flag
        output_projector_features = (
            output_projector_features if output_projector_features is not None else self.config.output_projector_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        patches = None
        if pixel_values is not None and cache is None and inputs_embeds is None:
            if input_ids is None:
                raise ValueError("OpenVLAForActionPrediction.forward: pixel_values given without input_ids")
            inputs_embeds, attention_mask, labels, patches = self._multimodal_inputs(
                input_ids, attention_mask, pixel_values, labels, proprio
            )
            input_ids = None
        out = self.language_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels if not logits_to_keep else None,
            cache=cache,
            position_ids=position_ids,
            use_cache=use_cache,
            return_dict=True,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        loss = out.loss
        if logits_to_keep and labels is not None:
            kept = labels[:, -logits_to_keep:]
            dropped = labels[:, 1 : labels.shape[1] - logits_to_keep + 1]  # position 0 is never predicted
            if bool((dropped != IGNORE_INDEX).any()):
                raise ValueError(
                    f"logits_to_keep={logits_to_keep} drops labelled positions; use at least "
                    f"min_logits_to_keep(labels) on the text labels"
                )
            num_items = kwargs.get("num_items_in_batch")
            loss = nn.functional.cross_entropy(
                out.logits[:, :-1].flatten(0, 1).float(),
                kept[:, 1:].flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="mean" if num_items is None else "sum",
            )
            if num_items is not None:
                loss = loss / num_items
        result = OpenVLAOutput(
            loss=loss,
            logits=out.logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            projector_features=patches if output_projector_features else None,
        )
        return result if return_dict else result.to_tuple()

    @staticmethod
    def min_logits_to_keep(labels: torch.Tensor) -> int:
        """Smallest ``logits_to_keep`` that keeps the loss exact for these (text, right-padded) labels."""
        labelled = (labels != IGNORE_INDEX).any(dim=0).nonzero()
        if labelled.numel() == 0:
            return 1
        return int(labels.shape[1] - labelled[0, 0] + 1)


def build_vla(config: OpenVLAConfig, attn_implementation: str | None = None) -> OpenVLAForActionPrediction:
    """A randomly initialised VLA from ``config`` (no download). Works under ``torch.device("meta")``."""
    if attn_implementation is not None:
        config.text_config._attn_implementation = attn_implementation
    return OpenVLAForActionPrediction(config)
