"""Test helpers for the Hugging Face format: a tiny model whose actions depend on its inputs, statistics, and a
directory written in the official ``openvla/openvla-7b`` layout *without* our model code.

The official-layout writer derives every parameter name from the facts of DESIGN §10 (timm ViT state dicts with
LayerScale renamed to ``scale_factor`` under ``vision_backbone.featurizer`` / ``fused_featurizer``,
``projector.fc1..3``, a transformers Llama under ``language_model``) and writes the tensors with safetensors directly,
so a loader that depends on our own naming would fail on it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

ACTION_TOKENS = 256
BASE_VOCAB = 32000


def norm_stats(names: tuple[str, ...] = ("libero_embedded", "bridge_orig")) -> dict:
    """OpenVLA-shaped statistics for a few datasets (gripper unmasked, as BOUNDS_Q99 leaves it)."""
    out = {}
    for i, name in enumerate(names):
        scale = 1.0 + i
        out[name] = {
            "action": {
                "mean": [0.0] * 7,
                "std": [scale] * 7,
                "max": [scale] * 6 + [1.0],
                "min": [-scale] * 6 + [0.0],
                "q01": [-0.5 * scale] * 6 + [0.0],
                "q99": [0.5 * scale] * 6 + [1.0],
                "mask": [True] * 6 + [False],
            },
            # non-degenerate, so a raw state normalizes to a value that depends on it (all-zero bounds map to 0)
            "proprio": {
                "mean": [0.0] * 8,
                "std": [scale] * 8,
                "max": [2.0 * scale] * 8,
                "min": [-2.0 * scale] * 8,
                "q01": [-scale] * 8,
                "q99": [scale] * 8,
            },
            "num_transitions": 100 * (i + 1),
            "num_trajectories": 3 + i,
        }
    return out


def tiny_vla(seed: int = 0, stats: dict | None = None):
    """The ``tiny`` VLA, randomly initialised, with its greedy choice steered into the action-token range.

    A random LM head rarely prefers one of the last 256 ids; zeroing the other rows (and scaling these) makes
    every generated token an action token that depends on the image and the prompt, so "same actions" is a
    meaningful check rather than 7 copies of one clipped bin.
    """
    from openvla.model.configs import get_model_config
    from openvla.model.vla import build_vla

    torch.manual_seed(seed)
    config = get_model_config("tiny")
    config.norm_stats = stats if stats is not None else norm_stats()
    model = build_vla(config).eval()
    with torch.no_grad():
        head = model.language_model.lm_head.weight  # (32064, H)
        head[: BASE_VOCAB - ACTION_TOKENS].zero_()
        head[BASE_VOCAB:].zero_()
        head[BASE_VOCAB - ACTION_TOKENS : BASE_VOCAB].mul_(20.0)
    return model


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(96 + 8 * i, 128 - 4 * i, 3), dtype=np.uint8) for i in range(n)]


# -- the official layout, written independently of openvla.model ---------------------------------------------------
_GAMMA = re.compile(r"\.(ls[12])\.gamma$")


def official_param_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Official parameter names and shapes for an official ``config.json`` dict (built on the meta device)."""
    import timm
    from transformers import LlamaConfig, LlamaForCausalLM

    shapes: dict[str, tuple[int, ...]] = {}
    prefixes = ("featurizer", "fused_featurizer")
    kwargs_list = config.get("timm_model_kwargs") or [{}] * len(config["timm_model_ids"])
    vision_dim = 0
    with torch.device("meta"):
        for prefix, timm_id, size, kwargs in zip(
            prefixes, config["timm_model_ids"], config["image_sizes"], kwargs_list, strict=False
        ):
            vit = timm.create_model(timm_id, pretrained=False, num_classes=0, img_size=size, **kwargs)
            vision_dim += vit.embed_dim
            for key, value in vit.state_dict().items():
                official = _GAMMA.sub(r".\1.scale_factor", key)
                shapes[f"vision_backbone.{prefix}.{official}"] = tuple(value.shape)
        text = {k: v for k, v in config["text_config"].items() if k not in {"model_type", "torch_dtype"}}
        llm = LlamaForCausalLM(LlamaConfig(**text))
        for key, value in llm.state_dict().items():
            shapes[f"language_model.{key}"] = tuple(value.shape)
    hidden = config["text_config"]["hidden_size"]
    fused = 4 * vision_dim
    shapes.update(
        {
            "projector.fc1.weight": (fused, vision_dim),
            "projector.fc1.bias": (fused,),
            "projector.fc2.weight": (hidden, fused),
            "projector.fc2.bias": (hidden,),
            "projector.fc3.weight": (hidden, hidden),
            "projector.fc3.bias": (hidden,),
        }
    )
    return shapes


def official_config(image_size: int = 56) -> dict:
    """A config.json as the hub copy of openvla-7b has it (auto_map, transformers 4.40 era), with tiny dims.

    ``timm_model_kwargs`` is the one key of ours: official keys alone cannot describe a ViT smaller than the
    timm id's (the official remote code ignores unknown keys).
    """
    return {
        "arch_specifier": "no-align+fused-gelu-mlp",
        "architectures": ["OpenVLAForActionPrediction"],
        "auto_map": {
            "AutoConfig": "configuration_prismatic.OpenVLAConfig",
            "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
        },
        "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "image_resize_strategy": "resize-naive",
        "image_sizes": [image_size, image_size],
        "llm_backbone_id": "llama2-7b-pure",
        "llm_max_length": 2048,
        "model_type": "openvla",
        "n_action_bins": 256,
        "norm_stats": norm_stats(("bridge_orig", "fractal20220817_data")),
        "output_projector_states": False,
        "pad_to_multiple_of": 64,
        "pad_token_id": 32000,
        "text_config": {
            "model_type": "llama",
            "pad_token_id": 32000,
            "torch_dtype": "bfloat16",
            "vocab_size": 32064,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_model_kwargs": [
            {"embed_dim": 48, "depth": 3, "num_heads": 2},
            {"embed_dim": 48, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0},
        ],
        "timm_override_act_layers": [None, None],
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.1",
        "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
    }


def official_preprocessor_config(size: int) -> dict:
    norms = [
        {"inplace": False, "mean": [0.484375, 0.455078125, 0.40625], "std": [0.228515625, 0.2236328125, 0.224609375]},
        {"inplace": False, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ]
    return {
        "auto_map": {
            "AutoImageProcessor": "processing_prismatic.PrismaticImageProcessor",
            "AutoProcessor": "processing_prismatic.PrismaticProcessor",
        },
        "image_processor_type": "PrismaticImageProcessor",
        "image_resize_strategy": "resize-naive",
        "input_sizes": [[3, size, size], [3, size, size]],
        "interpolations": ["bicubic", "bicubic"],
        "means": [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]],
        "processor_class": "PrismaticProcessor",
        "stds": [[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]],
        "tvf_crop_params": [{"output_size": [size, size]}] * 2,
        "tvf_do_letterbox": False,
        "tvf_letterbox_fill": None,
        "tvf_normalize_params": norms,
        "tvf_resize_params": [{"antialias": True, "interpolation": 3, "max_size": None, "size": [size, size]}] * 2,
        "use_fused_vision_backbone": True,
    }


def write_official_directory(directory: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write an official-layout directory (bf16 weights, official names) and return the tensors written."""
    from safetensors.torch import save_file

    from openvla.model.text_tokenizer import load_text_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    config = official_config()
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        name: (0.05 * torch.randn(shape, generator=generator)).to(torch.bfloat16)
        for name, shape in sorted(official_param_shapes(config).items())
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    size = config["image_sizes"][0]
    (directory / "preprocessor_config.json").write_text(json.dumps(official_preprocessor_config(size), indent=2))
    processor = {
        "auto_map": {"AutoProcessor": "processing_prismatic.PrismaticProcessor"},
        "processor_class": "PrismaticProcessor",
    }
    (directory / "processor_config.json").write_text(json.dumps(processor, indent=2))
    (directory / "dataset_statistics.json").write_text(json.dumps(config["norm_stats"]))
    load_text_tokenizer("mistral-v1").save_pretrained(str(directory))
    return tensors
