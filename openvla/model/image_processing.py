"""``PrismaticImageProcessor``: per-backbone resize + normalize → ``pixel_values`` [B, 3·n, S, S], DINOv2 first.

The same object preprocesses training frames (``VLABatchTransform``) and inference images (the HF processor,
evaluation, serving), so both see numerically identical tensors. Per backbone: optional letterbox padding to a
square (fill = the backbone mean as uint8), resize with PIL bicubic (antialiased) — to S×S for
``resize-naive``, shorter side to S then centre crop for ``resize-crop`` and ``letterbox`` — then ``to_tensor``
([0, 1]) and ``(x − mean) / std``. DINOv2 uses the ImageNet mean/std, SigLIP 0.5/0.5.

The attributes (``input_sizes``, ``means``, ``tvf_resize_params``…) are the keys of an official
``preprocessor_config.json`` (DESIGN §10), written by ``save_pretrained`` and read back by ``from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TVF
from PIL import Image
from torchvision.transforms import InterpolationMode
from transformers.image_processing_utils import BatchFeature, ImageProcessingMixin

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

RESIZE_STRATEGIES = ("resize-naive", "resize-crop", "letterbox")
_PIL_INTERPOLATION = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1}  # PIL enum values (tvf style)
_TV_INTERPOLATION = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
}


def mean_std_for(timm_model_id: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalization of a timm backbone: SigLIP (and CLIP-style 0.5) vs ImageNet (DINOv2 and the rest)."""
    if "siglip" in timm_model_id:
        return SIGLIP_MEAN, SIGLIP_STD
    if "clip" in timm_model_id:
        return (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    return IMAGENET_MEAN, IMAGENET_STD


def letterbox_pad(image: Image.Image, fill: Sequence[int]) -> Image.Image:
    """Pad to a square with ``fill``, the image centred (extra pixel of an odd difference on the right/bottom)."""
    w, h = image.size
    side = max(w, h)
    left, top = (side - w) // 2, (side - h) // 2
    padding = [left, top, side - w - left, side - h - top]
    return TVF.pad(image, padding, fill=tuple(int(v) for v in fill), padding_mode="constant")


def to_pil(image: Any) -> Image.Image:
    """PIL image, uint8 HxWx3 numpy array or uint8 HxWx3 tensor → RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"PrismaticImageProcessor: expected uint8 HxWx3 images, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


class PrismaticImageProcessor(ImageProcessingMixin):
    model_input_names = ["pixel_values"]  # noqa: RUF012 — transformers reads this class attribute

    def __init__(
        self,
        use_fused_vision_backbone: bool = False,
        image_resize_strategy: str = "letterbox",
        input_sizes: list | None = None,
        interpolations: list | None = None,
        means: list | None = None,
        stds: list | None = None,
        **kwargs: Any,
    ) -> None:
        n = 2 if use_fused_vision_backbone else 1
        input_sizes = [list(s) for s in (input_sizes or [[3, 224, 224]] * n)]
        interpolations = list(interpolations or ["bicubic"] * n)
        means = [list(m) for m in (means or [list(SIGLIP_MEAN)] * n)]
        stds = [list(s) for s in (stds or [list(SIGLIP_STD)] * n)]
        if image_resize_strategy not in RESIZE_STRATEGIES:
            raise ValueError(
                f"PrismaticImageProcessor.image_resize_strategy: expected one of {RESIZE_STRATEGIES}, "
                f"got {image_resize_strategy!r}"
            )
        for key, value in (
            ("input_sizes", input_sizes),
            ("interpolations", interpolations),
            ("means", means),
            ("stds", stds),
        ):
            if len(value) != n:
                raise ValueError(f"PrismaticImageProcessor.{key}: expected {n} entries (one per backbone), got {value}")
        for interp in interpolations:
            if interp not in _PIL_INTERPOLATION:
                raise ValueError(
                    f"PrismaticImageProcessor.interpolations: unknown {interp!r}; known {list(_PIL_INTERPOLATION)}"
                )
        sizes = {int(s[-1]) for s in input_sizes}
        if len(sizes) != 1:
            raise ValueError(f"PrismaticImageProcessor.input_sizes: backbones must share one size, got {input_sizes}")
        # Derived torchvision-style parameters, serialized like the official preprocessor_config.json.
        naive = image_resize_strategy == "resize-naive"
        kwargs.pop("tvf_resize_params", None)
        kwargs.pop("tvf_crop_params", None)
        kwargs.pop("tvf_normalize_params", None)
        kwargs.pop("tvf_do_letterbox", None)
        kwargs.pop("tvf_letterbox_fill", None)
        self.tvf_resize_params = [
            {
                "size": [int(s[-1]), int(s[-1])] if naive else int(s[-1]),
                "interpolation": _PIL_INTERPOLATION[interp],
                "max_size": None,
                "antialias": True,
            }
            for s, interp in zip(input_sizes, interpolations, strict=True)
        ]
        self.tvf_crop_params = [{"output_size": [int(s[-1]), int(s[-1])]} for s in input_sizes]
        self.tvf_normalize_params = [
            {"mean": [float(v) for v in m], "std": [float(v) for v in s], "inplace": False}
            for m, s in zip(means, stds, strict=True)
        ]
        self.tvf_do_letterbox = image_resize_strategy == "letterbox"
        self.tvf_letterbox_fill = [int(v * 255) for v in means[0]] if self.tvf_do_letterbox else None
        super().__init__(
            use_fused_vision_backbone=use_fused_vision_backbone,
            image_resize_strategy=image_resize_strategy,
            input_sizes=input_sizes,
            interpolations=interpolations,
            means=means,
            stds=stds,
            **kwargs,
        )

    @classmethod
    def from_vla_config(cls, config: Any) -> PrismaticImageProcessor:
        """The processor matching an ``OpenVLAConfig`` (sizes, resize strategy, per-backbone mean/std)."""
        stats = [mean_std_for(timm_id) for timm_id in config.timm_model_ids]
        return cls(
            use_fused_vision_backbone=config.use_fused_vision_backbone,
            image_resize_strategy=config.image_resize_strategy,
            input_sizes=[[3, int(s), int(s)] for s in config.image_sizes],
            interpolations=["bicubic"] * len(config.timm_model_ids),
            means=[list(m) for m, _ in stats],
            stds=[list(s) for _, s in stats],
        )

    @property
    def image_size(self) -> int:
        return int(self.input_sizes[0][-1])

    def apply_transform(self, image: Any) -> torch.Tensor:
        """One image (PIL or uint8 HxWx3) → float32 [3·n, S, S]."""
        img = to_pil(image)
        if self.tvf_do_letterbox:
            img = letterbox_pad(img, self.tvf_letterbox_fill)
        resized: dict[tuple, Image.Image] = {}  # backbones with the same geometry share one resize
        tensors = []
        for resize, crop, norm in zip(
            self.tvf_resize_params, self.tvf_crop_params, self.tvf_normalize_params, strict=True
        ):
            size = resize["size"]
            key = (tuple(size) if isinstance(size, list) else size, resize["interpolation"], tuple(crop["output_size"]))
            if key not in resized:
                out = TVF.resize(
                    img,
                    size=size,
                    interpolation=_TV_INTERPOLATION[int(resize["interpolation"])],
                    max_size=resize.get("max_size"),
                    antialias=resize.get("antialias", True),
                )
                resized[key] = TVF.center_crop(out, crop["output_size"])
            tensor = TVF.to_tensor(resized[key])
            tensors.append(TVF.normalize(tensor, mean=norm["mean"], std=norm["std"]))
        return torch.cat(tensors, dim=0)

    def apply_transforms(self, images: Any) -> torch.Tensor:
        """One sample's image, or its camera images in the model's order (a list) → [3·n·N, S, S] (DESIGN §13)."""
        if isinstance(images, list | tuple):
            return torch.cat([self.apply_transform(image) for image in images], dim=0)
        return self.apply_transform(images)

    def preprocess(self, images: Any, return_tensors: str | None = None, **_: Any) -> BatchFeature:
        """One image or a list → ``BatchFeature(pixel_values=[B, 3·n, S, S])``; a list element that is itself a list
        holds one sample's camera images (several-camera models: [B, 3·n·N, S, S])."""
        if isinstance(images, Image.Image) or (isinstance(images, np.ndarray | torch.Tensor) and images.ndim == 3):
            images = [images]
        pixel_values = torch.stack([self.apply_transforms(img) for img in images])
        return BatchFeature(data={"pixel_values": pixel_values.float().numpy()}, tensor_type=return_tensors)

    def __call__(self, images: Any, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)
