"""Vision backbones: one or two timm ViTs whose second-to-last-block patch tokens are the image features.

OpenVLA (Prismatic) reads the patch tokens of the *second-to-last* transformer block: no final norm, no CLS,
register or other prefix tokens. A fused backbone (DINOv2 + SigLIP) concatenates both on channels, so
openvla-7b gives [B, 256, 1024 + 1152 = 2176] at 224 px. The input is the two normalized images stacked on
channels, [B, 6, S, S], DINOv2 first (``PrismaticImageProcessor``).

Module and parameter names match the official checkpoint: ``featurizer`` (first / DINOv2), ``fused_featurizer``
(second / SigLIP), and timm's LayerScale ``gamma`` is stored as ``scale_factor``. ``rename_timm_keys`` maps a timm
state dict (``…ls1.gamma``) to our names. The whole timm model is kept (last block, final norm, SigLIP's attention
pool) so that state dicts match the official one; those parameters never receive a gradient.

Several cameras (OpenVLA-OFT, DESIGN §13): ``pixel_values`` [B, 3·n·N, S, S] hold N images on channels (each
image's DINOv2 channels, then its SigLIP channels). Every image goes through the same ViT(s) — one batched call over
B·N images — and the patches are concatenated on the sequence in camera order, [B, N·P, D]. N = 1 is OpenVLA.

FiLM (OFT+, ``use_film``): a language vector (the mean of the prompt's token embeddings) modulates the residual
stream of every ViT block between its attention and MLP sub-blocks, ``x ← (1 + γ)·x + β`` with γ, β linear in the
language vector, one pair of projections per block per ViT (``film.<vit>.blocks.<i>.{gamma,beta}``). Only the blocks
up to the second-to-last (the feature block) get one: the last block's output is never read. The projections start
at zero, so FiLM begins as the identity, and a model fine-tuned into FiLM starts from its base's features.
"""

from __future__ import annotations

import re
import types
from typing import Any

import timm
import torch
from timm.layers import LayerScale as TimmLayerScale
from torch import nn


class LayerScale(nn.Module):
    """timm's LayerScale with its parameter named ``scale_factor`` (official OpenVLA checkpoint naming)."""

    def __init__(self, scale_factor: torch.Tensor) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(scale_factor.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Accept timm-named weights too (`gamma`), so `load_state_dict` of a plain timm checkpoint just works.
        if prefix + "gamma" in state_dict and prefix + "scale_factor" not in state_dict:
            state_dict[prefix + "scale_factor"] = state_dict.pop(prefix + "gamma")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


_GAMMA_KEY = re.compile(r"(\.ls[12])\.gamma$")


def rename_timm_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """timm names (``blocks.0.ls1.gamma``) → official OpenVLA names (``blocks.0.ls1.scale_factor``)."""
    return {_GAMMA_KEY.sub(r"\1.scale_factor", k): v for k, v in state_dict.items()}


def create_vit(timm_id: str, image_size: int, act_layer: str | None = None, **kwargs: Any) -> nn.Module:
    """A randomly initialised timm ViT (never downloads), LayerScale renamed to ``scale_factor``."""
    if act_layer is not None:
        kwargs["act_layer"] = act_layer
    vit = timm.create_model(timm_id, pretrained=False, num_classes=0, img_size=image_size, **kwargs)
    if not hasattr(vit, "blocks") or len(vit.blocks) < 2:
        raise ValueError(f"timm model {timm_id!r}: expected a ViT with at least 2 blocks (features = block −2)")
    for block in vit.blocks:
        for name in ("ls1", "ls2"):
            layer = getattr(block, name, None)
            if isinstance(layer, TimmLayerScale):
                setattr(block, name, LayerScale(layer.gamma))
    return vit


def vit_patch_features(vit: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Patch tokens after the second-to-last block, without final norm and prefix tokens: [B, P, D].

    ``stop_early`` skips the last block, whose output is never read (same features, one block less of compute).
    """
    (features,) = vit.forward_intermediates(
        pixel_values,
        indices=[len(vit.blocks) - 2],
        norm=False,
        stop_early=True,
        output_fmt="NLC",
        intermediates_only=True,
    )
    return features


class ZeroLinear(nn.Linear):
    """A Linear that initialises to zero (the model's ``_init_weights`` calls ``reset_parameters`` for it too)."""

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.weight.zero_()
        if self.bias is not None:
            self.bias.zero_()


class FiLMProjection(nn.Module):
    """γ and β of one ViT block: Linear(LLM width → ViT width) each, zero at initialisation (FiLM = identity)."""

    def __init__(self, llm_dim: int, vit_dim: int) -> None:
        super().__init__()
        self.gamma = ZeroLinear(llm_dim, vit_dim)
        self.beta = ZeroLinear(llm_dim, vit_dim)

    def forward(self, language: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, llm_dim] → (γ, β), each [B, 1, vit_dim] (broadcast over the tokens)."""
        return self.gamma(language)[:, None], self.beta(language)[:, None]


class FiLM(nn.Module):
    """The FiLM projections of one ViT: one ``FiLMProjection`` per block whose output the features depend on."""

    def __init__(self, num_blocks: int, llm_dim: int, vit_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FiLMProjection(llm_dim, vit_dim) for _ in range(num_blocks))


def _film_block_forward(block: nn.Module, x: torch.Tensor, gamma: torch.Tensor | None = None,
                        beta: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """timm's pre-norm block with FiLM between the attention and MLP residuals (γ, β None: the plain block)."""
    x = x + block.drop_path1(block.ls1(block.attn(block.norm1(x))))
    if gamma is not None:
        x = x * (1 + gamma) + beta
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def enable_film(vit: nn.Module) -> None:
    """Give every block of ``vit`` a ``forward(x, gamma, beta)``; the call still goes through the block module, so
    FSDP/activation-checkpoint wrappers of the block see it (the parameters stay where they were)."""
    for block in vit.blocks:
        block.forward = types.MethodType(_film_block_forward, block)


def film_patch_features(vit: nn.Module, film: FiLM, pixel_values: torch.Tensor, language: torch.Tensor) -> torch.Tensor:
    """``vit_patch_features`` with FiLM: the same tokens, blocks 0 … L−2 modulated by ``language`` [B, llm_dim]."""
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(pixel_values))))
    language = language.to(film.blocks[0].gamma.weight.dtype)
    for block, projection in zip(vit.blocks[: len(vit.blocks) - 1], film.blocks, strict=True):
        gamma, beta = projection(language)
        gamma, beta = gamma.to(x.dtype), beta.to(x.dtype)
        if vit.grad_checkpointing and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(block, x, gamma, beta, use_reentrant=False)
        else:
            x = block(x, gamma, beta)
    return x[:, vit.num_prefix_tokens :]


class PrismaticVisionBackbone(nn.Module):
    """One ViT (``featurizer``) or two fused ViTs (``featurizer`` + ``fused_featurizer``), over N images each."""

    def __init__(
        self,
        use_fused_vision_backbone: bool,
        timm_model_ids: list[str],
        image_sizes: list[int],
        timm_override_act_layers: list[str | None],
        timm_model_kwargs: list[dict[str, Any]] | None = None,
        num_images: int = 1,
        film_llm_dim: int | None = None,
    ) -> None:
        """``film_llm_dim``: the LLM width when FiLM is on (None = off)."""
        super().__init__()
        kwargs = timm_model_kwargs or [{} for _ in timm_model_ids]
        self.use_fused_vision_backbone = use_fused_vision_backbone
        self.num_images = int(num_images)
        self.featurizer = create_vit(timm_model_ids[0], image_sizes[0], timm_override_act_layers[0], **kwargs[0])
        self.embed_dim = self.featurizer.embed_dim
        if use_fused_vision_backbone:
            self.fused_featurizer = create_vit(
                timm_model_ids[1], image_sizes[1], timm_override_act_layers[1], **kwargs[1]
            )
            self.embed_dim += self.fused_featurizer.embed_dim
        self.use_film = film_llm_dim is not None
        if self.use_film:
            self.film = nn.ModuleDict(
                {name: FiLM(len(vit.blocks) - 1, int(film_llm_dim), vit.embed_dim) for name, vit in self.vits()}
            )
            for _, vit in self.vits():
                enable_film(vit)

    def vits(self) -> list[tuple[str, nn.Module]]:
        """(attribute name, ViT) of the featurizers, DINOv2 first."""
        names = ["featurizer", "fused_featurizer"] if self.use_fused_vision_backbone else ["featurizer"]
        return [(name, getattr(self, name)) for name in names]

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (the sequence holds ``num_images`` times this)."""
        return self.featurizer.patch_embed.num_patches

    def forward(self, pixel_values: torch.Tensor, language: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 3·n·N, S, S] (+ FiLM's language [B, llm_dim]) → [B, N·P, D₁ (+ D₂)], the images in order."""
        per_image = 3 * len(self.vits())
        bsz, channels, height, width = pixel_values.shape
        if channels != per_image * self.num_images:
            raise ValueError(
                f"vision backbone: pixel_values have {channels} channels, expected {per_image} per image × "
                f"{self.num_images} images (num_images_in_input)"
            )
        images = pixel_values.reshape(bsz * self.num_images, per_image, height, width)  # image-major per sample
        if self.use_film:
            if language is None:
                raise ValueError("this model uses FiLM: the vision backbone needs the prompt's language embedding")
            language = language.repeat_interleave(self.num_images, dim=0)
        features = []
        for index, (name, vit) in enumerate(self.vits()):
            pixels = images[:, 3 * index : 3 * index + 3]
            if self.use_film:
                features.append(film_patch_features(vit, self.film[name], pixels, language))
            else:
                features.append(vit_patch_features(vit, pixels))
        patches = torch.cat(features, dim=2)  # [B·N, P, D]
        return patches.reshape(bsz, self.num_images * patches.shape[1], patches.shape[2])
