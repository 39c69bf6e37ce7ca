"""PrismaticImageProcessor against hand computations, and training vs inference preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from openvla.model.configs import get_model_config
from openvla.model.image_processing import PrismaticImageProcessor
from tests.model_fixtures import fake_frame, tiny_batch_transform

DINO_MEAN, DINO_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def processor(strategy: str = "resize-naive", size: int = 112) -> PrismaticImageProcessor:
    return PrismaticImageProcessor(
        use_fused_vision_backbone=True,
        image_resize_strategy=strategy,
        input_sizes=[[3, size, size]] * 2,
        means=[DINO_MEAN.tolist(), [0.5] * 3],
        stds=[DINO_STD.tolist(), [0.5] * 3],
    )


def test_same_size_image_is_only_normalized_dinov2_first():
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    out = processor()(img, return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 6, 112, 112) and out.dtype == torch.float32
    x = img.astype(np.float64).transpose(2, 0, 1) / 255.0
    dino = (x - DINO_MEAN[:, None, None]) / DINO_STD[:, None, None]
    siglip = (x - 0.5) / 0.5
    np.testing.assert_allclose(out[0, :3].numpy(), dino, atol=1e-5)
    np.testing.assert_allclose(out[0, 3:].numpy(), siglip, atol=1e-5)
    assert out[0, 0, 0, 0].item() == pytest.approx((img[0, 0, 0] / 255 - 0.485) / 0.229, abs=1e-5)


def test_naive_resize_of_a_constant_image_keeps_the_colour_exactly():
    img = np.zeros((30, 50, 3), np.uint8) + np.array([10, 128, 250], np.uint8)
    out = processor("resize-naive")(Image.fromarray(img), return_tensors="pt")["pixel_values"][0]
    expected = (np.array([10, 128, 250]) / 255.0 - DINO_MEAN) / DINO_STD
    for c in range(3):
        np.testing.assert_allclose(out[c].numpy(), expected[c], atol=1e-5)
        np.testing.assert_allclose(out[3 + c].numpy(), (np.array([10, 128, 250])[c] / 255.0 - 0.5) / 0.5, atol=1e-5)


def test_letterbox_pads_with_the_mean_colour_before_resizing():
    img = np.full((10, 20, 3), 200, np.uint8)  # wide image: padding goes above and below
    out = processor("letterbox")(img, return_tensors="pt")["pixel_values"][0]
    fill = np.array([int(0.485 * 255), int(0.456 * 255), int(0.406 * 255)])  # (123, 116, 103)
    for c in range(3):
        pad_value = (fill[c] / 255.0 - DINO_MEAN[c]) / DINO_STD[c]
        np.testing.assert_allclose(out[c, :20].numpy(), pad_value, atol=1e-5)  # top quarter is padding
        np.testing.assert_allclose(out[c, -20:].numpy(), pad_value, atol=1e-5)
        np.testing.assert_allclose(out[c, 45:67].numpy(), (200 / 255.0 - DINO_MEAN[c]) / DINO_STD[c], atol=1e-5)


def test_training_transform_and_inference_processor_give_identical_pixels():
    frame = fake_frame(3, "pick up the bowl")
    item = tiny_batch_transform()(frame)
    inference = PrismaticImageProcessor.from_vla_config(get_model_config("tiny"))
    pil = Image.fromarray(frame["observation"]["image_primary"][0])
    torch.testing.assert_close(
        item["pixel_values"], inference(pil, return_tensors="pt")["pixel_values"][0], rtol=0, atol=0
    )


def test_save_and_load_keep_the_official_keys(tmp_path):
    proc = PrismaticImageProcessor.from_vla_config(get_model_config("openvla-7b"))
    proc.save_pretrained(tmp_path)
    loaded = PrismaticImageProcessor.from_pretrained(tmp_path)
    for key in (
        "input_sizes",
        "interpolations",
        "means",
        "stds",
        "tvf_resize_params",
        "tvf_crop_params",
        "tvf_normalize_params",
    ):
        assert getattr(loaded, key) == getattr(proc, key), key
    assert proc.tvf_resize_params[0] == {"size": [224, 224], "interpolation": 3, "max_size": None, "antialias": True}
    assert proc.means == [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]]


def test_bad_strategy_names_the_options():
    with pytest.raises(ValueError, match="resize-naive"):
        processor("stretch")
