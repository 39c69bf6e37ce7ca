"""The official ``openvla/openvla-7b`` directory layout, written down once (DESIGN §10).

What an official-format directory holds and how its files must look: the exact ``config.json`` keys, the
``preprocessor_config.json`` keys, ``processor_config.json``, and the parameter naming rules (``featurizer`` =
first/DINOv2 ViT, ``fused_featurizer`` = second/SigLIP ViT, LayerScale stored as ``scale_factor``, ``projector.fc*``,
``language_model.*``). The export writes these; ``check_official_layout`` is what tests and the export stage use to
verify a directory.

Our model already names its parameters as the official checkpoint does, so loading an official directory needs no
key renaming. Two kinds of foreign keys may still appear in checkpoints made by other tools and are mapped here:
timm's own LayerScale name (``…ls1.gamma``, e.g. a checkpoint saved by plain timm/Prismatic code) and Llama's
persistent ``rotary_emb.inv_freq`` buffers from old transformers versions (recomputed, so dropped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Keys of the official config.json (besides model_type/architectures/torch_dtype/transformers_version/auto_map).
OFFICIAL_CONFIG_KEYS: tuple[str, ...] = (
    "vision_backbone_id",
    "llm_backbone_id",
    "arch_specifier",
    "use_fused_vision_backbone",
    "image_resize_strategy",
    "text_config",
    "hf_llm_id",
    "llm_max_length",
    "pad_token_id",
    "pad_to_multiple_of",
    "output_projector_states",
    "n_action_bins",
    "norm_stats",
    "timm_model_ids",
    "timm_override_act_layers",
    "image_sizes",
)
# Our optional keys (the official remote code accepts and ignores unknown config keys).
OUR_CONFIG_KEYS: tuple[str, ...] = (
    "image_resize_method",
    "image_augmentation",
    "timm_model_kwargs",
    "space_token_id",
    "action_head",
    "action_chunk",
    "parallel_decoding",
    "action_dim",
    "use_proprio",
    "proprio_dim",
    "l1_head_blocks",
    "action_normalization",
    "num_images_in_input",
    "camera_roles",
    "use_film",
    "bridged_action_options",  # what fine-tuning changed in its base's options (openvla.train.finetune)
)
OFFICIAL_PREPROCESSOR_KEYS: tuple[str, ...] = (
    "image_processor_type",
    "processor_class",
    "use_fused_vision_backbone",
    "image_resize_strategy",
    "input_sizes",
    "interpolations",
    "means",
    "stds",
    "tvf_resize_params",
    "tvf_crop_params",
    "tvf_normalize_params",
    "tvf_do_letterbox",
    "tvf_letterbox_fill",
)
MODEL_TYPE = "openvla"
ARCHITECTURE = "OpenVLAForActionPrediction"
IMAGE_PROCESSOR_TYPE = "PrismaticImageProcessor"
PROCESSOR_CLASS = "PrismaticProcessor"
OFFICIAL_WEIGHT_PREFIXES = (
    "vision_backbone.featurizer.",
    "vision_backbone.fused_featurizer.",
    "projector.",
    "language_model.",
)
# Our optional modules (OFT-style chunks, FiLM): present only when the config enables them; the official remote code
# cannot use them, so an export with them is ours-only (config keys parallel_decoding / action_head / use_proprio /
# use_film).
OUR_WEIGHT_PREFIXES = ("action_queries.", "proprio_projector.", "l1_head.", "vision_backbone.film.")
WEIGHT_PREFIXES = OFFICIAL_WEIGHT_PREFIXES + OUR_WEIGHT_PREFIXES

_TIMM_GAMMA = re.compile(r"\.(ls[12])\.gamma$")
_OFFICIAL_SCALE = re.compile(r"\.(ls[12])\.scale_factor$")
_STALE_BUFFER = re.compile(r"\.rotary_emb\.inv_freq$")


_TEXT_CONFIG_NOISE = (
    "transformers_version",
    "architectures",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "dtype",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "id2label",
    "label2id",
    "problem_type",
    "_name_or_path",
)


class LayoutError(ValueError):
    """A directory does not follow the official OpenVLA layout; the message names the file and key."""


def official_config_dict(config: Any, torch_dtype: str) -> dict[str, Any]:
    """``config.json`` content in the official layout from an ``OpenVLAConfig`` (official keys, then ours).

    ``text_config`` is written in full (a tiny model's dimensions differ from Llama-2 7B's defaults) and also gets
    ``rope_theta`` so that transformers 4.x (the official remote code's era) reads the same rotary base.
    """
    text = config.text_config.to_dict() if hasattr(config.text_config, "to_dict") else dict(config.text_config)
    rope = text.get("rope_parameters") or {}
    if "rope_theta" not in text and isinstance(rope, dict) and "rope_theta" in rope:
        text["rope_theta"] = rope["rope_theta"]
    for noise in _TEXT_CONFIG_NOISE:  # generic PretrainedConfig attributes the official text_config does not carry
        text.pop(noise, None)
    text["torch_dtype"] = torch_dtype
    out: dict[str, Any] = {"model_type": MODEL_TYPE, "architectures": [ARCHITECTURE]}
    for key in OFFICIAL_CONFIG_KEYS:
        out[key] = text if key == "text_config" else getattr(config, key)
    for key in OUR_CONFIG_KEYS:
        if getattr(config, key, None) is not None:
            out[key] = getattr(config, key)
    out["torch_dtype"] = torch_dtype
    import transformers

    out["transformers_version"] = transformers.__version__
    return out


def is_foreign_key(key: str) -> bool:
    """A checkpoint key that needs mapping before it fits our (= the official) names."""
    return bool(_TIMM_GAMMA.search(key) or _STALE_BUFFER.search(key))


def to_official_names(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Map foreign names to official ones: ``…ls1.gamma`` → ``…ls1.scale_factor``; drop ``rotary_emb.inv_freq``."""
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if _STALE_BUFFER.search(key):
            continue
        out[_TIMM_GAMMA.sub(r".\1.scale_factor", key)] = value
    return out


def to_timm_names(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The reverse mapping (official → timm LayerScale names), for code that loads ViT weights into plain timm."""
    return {_OFFICIAL_SCALE.sub(r".\1.gamma", k): v for k, v in state_dict.items()}


def weight_keys(directory: str | Path) -> list[str]:
    """Every tensor name stored in a directory's safetensors (sharded or not)."""
    from safetensors import safe_open

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return sorted(json.loads(index.read_text())["weight_map"])
    single = directory / "model.safetensors"
    if not single.is_file():
        raise LayoutError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    with safe_open(str(single), framework="pt") as f:
        return sorted(f.keys())


def check_weight_names(keys: Iterable[str], where: str = "state dict") -> None:
    """Raise ``LayoutError`` when a key is outside the official naming (prefixes, LayerScale, stale buffers)."""
    keys = list(keys)
    bad_prefix = [k for k in keys if not k.startswith(WEIGHT_PREFIXES)]
    foreign = [k for k in keys if is_foreign_key(k)]
    if bad_prefix:
        raise LayoutError(f"{where}: keys outside {WEIGHT_PREFIXES}: {bad_prefix[:5]}")
    if foreign:
        raise LayoutError(f"{where}: non-official names (expected …ls1.scale_factor, no inv_freq): {foreign[:5]}")
    if not any(k.startswith("projector.fc1.") for k in keys):
        raise LayoutError(f"{where}: no projector.fc1 weights")


def check_official_layout(directory: str | Path) -> None:
    """Verify an export: required files, exact official config/preprocessor keys, official weight names."""
    directory = Path(directory)
    required = ["config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json"]
    missing = [name for name in required if not (directory / name).is_file()]
    if missing:
        raise LayoutError(f"{directory}: missing {', '.join(missing)}")
    config = json.loads((directory / "config.json").read_text())
    need = (*OFFICIAL_CONFIG_KEYS, "model_type", "architectures", "torch_dtype")
    absent = [k for k in need if k not in config]
    if absent:
        raise LayoutError(f"{directory / 'config.json'}: missing official keys {absent}")
    if config["model_type"] != MODEL_TYPE or config["architectures"] != [ARCHITECTURE]:
        raise LayoutError(
            f"{directory / 'config.json'}: model_type/architectures must be {MODEL_TYPE!r}/[{ARCHITECTURE!r}]"
        )
    pre = json.loads((directory / "preprocessor_config.json").read_text())
    absent = [k for k in OFFICIAL_PREPROCESSOR_KEYS if k not in pre]
    if absent:
        raise LayoutError(f"{directory / 'preprocessor_config.json'}: missing official keys {absent}")
    if pre["image_processor_type"] != IMAGE_PROCESSOR_TYPE or pre["processor_class"] != PROCESSOR_CLASS:
        raise LayoutError(
            f"{directory / 'preprocessor_config.json'}: expected {IMAGE_PROCESSOR_TYPE} / {PROCESSOR_CLASS}"
        )
    proc = json.loads((directory / "processor_config.json").read_text())
    if proc.get("processor_class") != PROCESSOR_CLASS:
        raise LayoutError(f"{directory / 'processor_config.json'}: processor_class must be {PROCESSOR_CLASS!r}")
    check_weight_names(weight_keys(directory), where=str(directory))
