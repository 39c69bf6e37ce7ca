"""Vision backbones: one or two timm ViTs whose second-to-last-block patch tokens are the image features.

OpenVLA (Prismatic) reads the patch tokens of the *second-to-last* transformer block: no final norm, no CLS,
register or other prefix tokens. A fused backbone (DINOv2 + SigLIP) concatenates both on channels, so
openvla-7b gives [B, 256, 1024 + 1152 = 2176] at 224 px. The input is the two normalized images stacked on
channels, [B, 6, S, S], DINOv2 first (``PrismaticImageProcessor``).

Module and parameter names match the official checkpoint: ``featurizer`` (first / DINOv2), ``fused_featurizer``
(second / SigLIP), and timm's LayerScale ``gamma`` is stored as ``scale_factor``. ``rename_timm_keys`` maps a timm
state dict (``…ls1.gamma``) to our names. The whole timm model is kept (last block, final norm, SigLIP's attention
pool) so that state dicts match the official one; those parameters never receive a gradient.
"""

from __future__ import annotations

import re
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
    """Patch tokens after the second-to-last block, without final norm and prefix tokens: [B, P, D]."""
    (features,) = vit.forward_intermediates(
        pixel_values,
        indices=[len(vit.blocks) - 2],
        norm=False,
        output_fmt="NLC",
        intermediates_only=True,
    )
    return features


class PrismaticVisionBackbone(nn.Module):
    """One ViT (``featurizer``) or two fused ViTs (``featurizer`` + ``fused_featurizer``)."""

    def __init__(
        self,
        use_fused_vision_backbone: bool,
        timm_model_ids: list[str],
        image_sizes: list[int],
        timm_override_act_layers: list[str | None],
        timm_model_kwargs: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        kwargs = timm_model_kwargs or [{} for _ in timm_model_ids]
        self.use_fused_vision_backbone = use_fused_vision_backbone
        self.featurizer = create_vit(timm_model_ids[0], image_sizes[0], timm_override_act_layers[0], **kwargs[0])
        self.embed_dim = self.featurizer.embed_dim
        if use_fused_vision_backbone:
            self.fused_featurizer = create_vit(
                timm_model_ids[1], image_sizes[1], timm_override_act_layers[1], **kwargs[1]
            )
            self.embed_dim += self.fused_featurizer.embed_dim

    @property
    def num_patches(self) -> int:
        return self.featurizer.patch_embed.num_patches

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3·n, S, S] → [B, P, D₁ (+ D₂)]."""
        if not self.use_fused_vision_backbone:
            return vit_patch_features(self.featurizer, pixel_values[:, :3])
        first = vit_patch_features(self.featurizer, pixel_values[:, :3])
        second = vit_patch_features(self.fused_featurizer, pixel_values[:, 3:6])
        return torch.cat([first, second], dim=2)
