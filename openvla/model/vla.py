"""``OpenVLAForActionPrediction``: the VLA used by training, evaluation, serving and the Hugging Face format.

One implementation (DESIGN §3, §10): ``vision_backbone`` (timm ViTs) → ``projector`` → ``language_model``
(a transformers causal LM, Llama for OpenVLA). The multimodal sequence is [BOS] + projected patches + the rest
of the prompt; the attention mask is set at the patch positions and the labels are −100 there.

``predict_action`` follows OpenVLA (append "▁" when missing, greedily generate ``action_dim`` tokens, decode
them to bin centres, unnormalize with ``norm_stats[unnorm_key]["action"]``) and, unlike OpenVLA, accepts a batch:
prompts of different lengths are left-aligned internally and decoded with the KV cache, giving the same tokens as
one prompt at a time.

OpenVLA-OFT's options (``openvla.model.action_heads``, all off by default): a chunk of ``action_chunk`` K actions
per query (token by token, or all K·D slots in one forward with ``parallel_decoding``), a continuous L1 head
(``action_head="l1"``), and a proprio token after the patches (``use_proprio``). Parallel training and inference
build the same sequence, [BOS] + patches (+ proprio) + prompt + "▁" + K·D slots, left-aligned so the slots sit at
the end of every row.

Run ``python -c "from openvla.model import build_vla, get_model_config; print(build_vla(get_model_config('tiny')))"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from openvla.model.action_heads import (
    ActionQueries,
    L1ActionHead,
    ProprioProjector,
    additive_mask,
    parallel_attention_mask,
)
from openvla.model.configuration import OpenVLAConfig
from openvla.model.projector import PrismaticProjector
from openvla.model.vision import LayerScale, PrismaticVisionBackbone

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class UnnormKeyError(KeyError, ValueError):
    """``unnorm_key`` is missing or unknown; the message lists the datasets in ``norm_stats``."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass
class OpenVLAOutput(ModelOutput):
    """Output of ``OpenVLAForActionPrediction.forward``; ``logits`` cover the full multimodal sequence."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Any = None  # the LLM's KV cache (transformers ≥ 5.2 calls it `cache`, OpenVLA `past_key_values`)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    projector_features: torch.Tensor | None = None
    actions: torch.Tensor | None = None  # L1 head: normalized action chunk [B, K, D]

    @property
    def past_key_values(self) -> Any:
        return self.cache


class OpenVLAForActionPrediction(PreTrainedModel):
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
    def project_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3·n, S, S] → projected patch embeddings [B, P, H]."""
        dtype = self.projector.fc1.weight.dtype
        return self.projector(self.vision_backbone(pixel_values.to(dtype)))

    def _multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Embeddings, mask and labels of [BOS] + patches (+ proprio token) + rest, and the projected patches."""
        patches = self.project_images(pixel_values)  # (B, P, H)
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, H)
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

    # ------------------------------------------------------------------------------------------------------------
    # action prediction
    # ------------------------------------------------------------------------------------------------------------
    @property
    def action_tokenizer(self) -> Any:
        """The uniform ``ActionTokenizer`` over the unpadded vocabulary (settable, e.g. to a quantile one)."""
        if self._action_tokenizer is None:
            from openvla.actions import ActionTokenizer

            self._action_tokenizer = ActionTokenizer(self.config.base_vocab_size, self.config.n_action_bins)
        return self._action_tokenizer

    @action_tokenizer.setter
    def action_tokenizer(self, value: Any) -> None:
        self._action_tokenizer = value

    def _norm_stats_entry(self, unnorm_key: str | None) -> dict:
        norm_stats = self.config.norm_stats or {}
        if not norm_stats:
            raise UnnormKeyError("model config has no norm_stats: set config.norm_stats to the dataset statistics JSON")
        if unnorm_key is None:
            if len(norm_stats) != 1:
                raise UnnormKeyError(
                    f"the model was trained on several datasets; pass unnorm_key, one of {sorted(norm_stats)}"
                )
            unnorm_key = next(iter(norm_stats))
        if unnorm_key not in norm_stats:
            raise UnnormKeyError(f"unnorm_key {unnorm_key!r} not in norm_stats; available keys: {sorted(norm_stats)}")
        return norm_stats[unnorm_key]

    def get_action_stats(self, unnorm_key: str | None = None) -> dict:
        """``norm_stats[unnorm_key]["action"]`` (the key may be omitted when there is exactly one dataset)."""
        return self._norm_stats_entry(unnorm_key)["action"]

    def get_action_dim(self, unnorm_key: str | None = None) -> int:
        return len(self.get_action_stats(unnorm_key)["q01"])

    def _left_aligned_prompt(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        proprio: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[BOS] + patches (+ proprio) + prompt + "▁" per row, left-aligned: (embeds, mask, position_ids).

        Prompts may be padded on either side (``attention_mask`` marks the real tokens, which must be contiguous
        and start with BOS). Each row gets "▁" appended when it does not end with it, is rebuilt with the image
        patches, and is rolled so that its last token is at the end; positions count from each row's first real
        token. Generation and parallel decoding both start from this, in training and inference alike.
        """
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if pixel_values.dim() == 3:
            pixel_values = pixel_values[None]
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(device).bool()
        space = self.config.space_token_id
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            row = ids[mask]
            if row.numel() == 0:
                raise ValueError("a prompt has no tokens (attention_mask all zero)")
            if int(row[-1]) != space:
                row = torch.cat([row, row.new_tensor([space])])
            rows.append(row)
        # Right-pad (BOS first, as _multimodal_inputs expects), insert the patches, then roll every row left-aligned.
        length = max(len(r) for r in rows)
        ids = input_ids.new_full((len(rows), length), self.config.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        proprio = proprio.to(device) if proprio is not None else None
        embeds, mask, _, _ = self._multimodal_inputs(ids, mask, pixel_values.to(device), proprio=proprio)
        total = mask.shape[1]
        n_pad = total - mask.sum(dim=1, keepdim=True)  # (B, 1)
        src = (torch.arange(total, device=device)[None] - n_pad) % total  # position t reads t − n_pad
        embeds = torch.gather(embeds, 1, src[..., None].expand_as(embeds))
        mask = torch.gather(mask, 1, src)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return embeds, mask, position_ids

    def parallel_forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        action_labels: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ) -> OpenVLAOutput:
        """All K·D action slots in one forward (OpenVLA-OFT's parallel decoding).

        Returns ``logits`` [B, K·D, V] of the slots (tokens head) or ``actions`` [B, K, D] (L1 head, normalized);
        ``loss`` is the cross-entropy against ``action_labels`` [B, K·D] or the mean L1 against ``actions``.
        """
        if not self.config.parallel_decoding:
            raise ValueError("parallel_forward needs a model with parallel_decoding=True")
        if self.config.text_config._attn_implementation not in (None, "sdpa", "eager"):
            raise ValueError(
                f"parallel decoding needs a custom attention mask: use attn_implementation 'sdpa' or 'eager', "
                f"not {self.config.text_config._attn_implementation!r}"
            )
        embeds, mask, position_ids = self._left_aligned_prompt(input_ids, pixel_values, attention_mask, proprio)
        bsz = embeds.shape[0]
        n_slots = self.config.num_action_slots
        embeds = torch.cat([embeds, self.action_queries(bsz).to(embeds.dtype)], dim=1)
        mask = torch.cat([mask, mask.new_ones(bsz, n_slots)], dim=1)
        slot_positions = position_ids[:, -1:] + torch.arange(1, n_slots + 1, device=embeds.device)[None]
        position_ids = torch.cat([position_ids, slot_positions], dim=1)
        mask4d = additive_mask(parallel_attention_mask(mask, n_slots), embeds.dtype)
        hidden = self.get_decoder()(inputs_embeds=embeds, attention_mask=mask4d, position_ids=position_ids)
        slot_hidden = hidden.last_hidden_state[:, -n_slots:]
        if self.config.action_head == "l1":
            predicted = self.l1_head(slot_hidden.to(self.l1_head.fc_in.weight.dtype))
            loss = None
            if actions is not None:
                target = actions.to(predicted.device, predicted.dtype).reshape(predicted.shape)
                loss = nn.functional.l1_loss(predicted.float(), target.float())
            return OpenVLAOutput(loss=loss, actions=predicted)
        logits = self.get_output_embeddings()(slot_hidden)
        loss = None
        if action_labels is not None:
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), action_labels.to(logits.device).flatten(), ignore_index=IGNORE_INDEX
            )
        return OpenVLAOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate_action_tokens(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_tokens: int = 7,
        do_sample: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Generate ``num_tokens`` ids after each prompt (+ "▁") with the KV cache: [B, num_tokens].

        A batch gives the same tokens as one prompt at a time (rows are left-aligned, ``_left_aligned_prompt``).
        """
        embeds, mask, position_ids = self._left_aligned_prompt(input_ids, pixel_values, attention_mask, proprio)
        lm = self.language_model
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
        generated = []
        for step in range(num_tokens):
            logits = out.logits[:, -1].float()
            generated.append(_pick(logits, do_sample, temperature, generator))
            if step == num_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            position_ids = position_ids[:, -1:] + 1
            out = lm(
                input_ids=generated[-1][:, None],
                attention_mask=mask,
                position_ids=position_ids,
                cache=out.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return torch.stack(generated, dim=1)

    def normalize_proprio(self, proprio: Any, unnorm_key: str | None = None) -> torch.Tensor:
        """Raw proprio state (P,) or [B, P] → normalized float tensor [B, P] with the dataset's proprio stats."""
        from openvla.actions import normalize

        entry = self._norm_stats_entry(unnorm_key)
        if "proprio" not in entry:
            raise UnnormKeyError(f"norm_stats[{unnorm_key!r}] has no 'proprio' entry; the model needs it (use_proprio)")
        raw = proprio.detach().cpu().numpy() if isinstance(proprio, torch.Tensor) else np.asarray(proprio)
        raw = np.atleast_2d(raw.astype(np.float64))
        if raw.shape[-1] != self.config.proprio_dim:
            raise ValueError(
                f"proprio has {raw.shape[-1]} dimensions, the model expects proprio_dim={self.config.proprio_dim}"
            )
        values = normalize(raw, entry["proprio"], kind=self.config.action_normalization)
        return torch.as_tensor(np.asarray(values, dtype=np.float32))

    @torch.no_grad()
    def predict_chunk_tokens(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        action_dim: int | None = None,
    ) -> np.ndarray:
        """Action token ids [B, K, D] of the tokens head: the slots' picks (parallel) or K·D generated tokens.

        ``action_dim`` overrides the config's D for token-by-token decoding (OpenVLA reads it from the statistics).
        """
        if self.config.action_head != "tokens":
            raise ValueError(f"predict_chunk_tokens needs the tokens head, this model has {self.config.action_head!r}")
        K = int(self.config.action_chunk)
        D = int(action_dim) if action_dim and not self.config.parallel_decoding else int(self.config.action_dim)
        if self.config.parallel_decoding:
            logits = self.parallel_forward(input_ids, pixel_values, attention_mask, proprio=proprio).logits
            tokens = _pick(logits.flatten(0, 1).float(), do_sample, temperature, None).reshape(len(logits), K * D)
        else:
            tokens = self.generate_action_tokens(
                input_ids, pixel_values, attention_mask, num_tokens=K * D, do_sample=do_sample,
                temperature=temperature, proprio=proprio,
            )  # fmt: skip
        return tokens.cpu().numpy().astype(np.int64).reshape(len(tokens), K, D)

    @torch.no_grad()
    def predict_normalized_chunk(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        action_dim: int | None = None,
    ) -> np.ndarray:
        """Normalized actions [B, K, D]: the L1 head's regression (clamped to [−1, 1]) or the decoded token chunk."""
        if self.config.action_head == "l1":
            out = self.parallel_forward(input_ids, pixel_values, attention_mask, proprio=proprio)
            return out.actions.float().clamp(-1.0, 1.0).cpu().numpy()
        ids = self.predict_chunk_tokens(
            input_ids, pixel_values, attention_mask, proprio, do_sample=do_sample, temperature=temperature,
            action_dim=action_dim,
        )  # fmt: skip
        # a fitted (quantile) tokenizer decodes per action dimension, the last axis of [B, K, D]
        return np.asarray(self.action_tokenizer.decode(ids), dtype=np.float32)

    @torch.no_grad()
    def predict_action(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        unnorm_key: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        proprio: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Unnormalized actions.

        With ``action_chunk`` K = 1 (OpenVLA): (action_dim,) for one prompt, (B, action_dim) for B > 1. With
        K > 1: a chunk (K, action_dim) for one prompt, (B, K, action_dim) for B > 1. ``proprio`` is the raw state
        ((P,) or [B, P]) for a model with ``use_proprio``; it is normalized with the dataset's proprio statistics.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("predict_action needs input_ids and pixel_values (from the processor)")
        if kwargs:
            logger.debug("predict_action ignores %s", sorted(kwargs))
        stats = self.get_action_stats(unnorm_key)
        action_dim = len(stats["q01"])
        if action_dim != self.config.action_dim and (self.config.action_chunk > 1 or self.config.parallel_decoding):
            raise ValueError(f"norm_stats actions have {action_dim} dimensions, the model's action_dim is "
                             f"{self.config.action_dim}")  # fmt: skip
        normalized_proprio = None
        if self.config.use_proprio:
            if proprio is None:
                raise ValueError("this model has use_proprio=True: predict_action needs proprio (the raw state)")
            normalized_proprio = self.normalize_proprio(proprio, unnorm_key)
        # OpenVLA (one step, token by token): the statistics decide how many tokens to generate.
        chunk = self.predict_normalized_chunk(
            input_ids, pixel_values, attention_mask, normalized_proprio, do_sample=do_sample, temperature=temperature,
            action_dim=action_dim,
        )  # fmt: skip
        from openvla.actions import unnormalize

        actions = np.asarray(unnormalize(chunk, stats, kind=self.config.action_normalization), dtype=np.float32)
        if self.config.action_chunk == 1:
            actions = actions[:, 0]
        return actions[0] if actions.shape[0] == 1 else actions


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy (argmax) or sampled token ids from logits [N, V]."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def build_vla(config: OpenVLAConfig, attn_implementation: str | None = None) -> OpenVLAForActionPrediction:
    """A randomly initialised VLA from ``config`` (no download). Works under ``torch.device("meta")``."""
    if attn_implementation is not None:
        config.text_config._attn_implementation = attn_implementation
    return OpenVLAForActionPrediction(config)
