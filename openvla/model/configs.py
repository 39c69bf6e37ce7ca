"""Named VLA configurations: ``tiny`` (the embedded CPU default), ``small`` and ``openvla-7b`` (official dims).

All three have the same architecture: a DINOv2-style ViT with 4 registers and LayerScale fused with a SigLIP-style
ViT (same timm ids as OpenVLA; tiny/small override the dimensions through ``timm_model_kwargs``), a fused GELU MLP
projector and a Llama decoder over a 32,000-piece SentencePiece vocabulary + ``<PAD>`` padded to 32,064 rows.

    >>> from openvla.model.configs import get_model_config
    >>> get_model_config("tiny").image_sizes
    [112, 112]
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from openvla.model.configuration import OpenVLAConfig

DINOV2_REG4 = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_224 = "vit_so400m_patch14_siglip_224"


def _llama(hidden: int, intermediate: int, layers: int, heads: int, **extra: object) -> dict:
    return {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "vocab_size": 32064,  # 32000 pieces + <PAD>, padded to a multiple of 64
        "pad_token_id": 32000,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,  # the official config leaves LlamaConfig's default (Llama-2 itself used 1e-5)
        "tie_word_embeddings": False,
        **extra,
    }


def _openvla_7b() -> OpenVLAConfig:
    """The official openvla/openvla-7b: DINOv2 ViT-L/14 reg4 + SigLIP So400m/14 at 224 px, Llama-2 7B."""
    return OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-so-224px",
        llm_backbone_id="llama2-7b-pure",
        arch_specifier="no-align+fused-gelu-mlp",
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        timm_model_ids=[DINOV2_REG4, SIGLIP_224],
        timm_override_act_layers=[None, None],
        image_sizes=[224, 224],
        hf_llm_id="meta-llama/Llama-2-7b-hf",
        text_config=_llama(4096, 11008, 32, 32),
        n_action_bins=256,
    )


def _small() -> OpenVLAConfig:
    """In between: ViT-S-sized backbones at 224 px and a 12-layer 768-wide Llama (≈ 180 M parameters)."""
    return OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-small-224px",
        llm_backbone_id="mistral-v0.1-small-pure",
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        timm_model_ids=[DINOV2_REG4, SIGLIP_224],
        timm_override_act_layers=[None, None],
        image_sizes=[224, 224],
        timm_model_kwargs=[
            {"embed_dim": 384, "depth": 12, "num_heads": 6},
            {"embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0},
        ],
        hf_llm_id=None,
        text_config=_llama(768, 2048, 12, 12),
        n_action_bins=256,
    )


def _tiny() -> OpenVLAConfig:
    """CPU-sized (the embedded default): 112 px → 8×8 = 64 patches, 4-block ViTs of width 96, a 4-layer Llama."""
    return OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-tiny-112px",
        llm_backbone_id="mistral-v0.1-tiny-pure",  # Mistral v0.1 SentencePiece (ships in mistral-common): "▁" = 28705
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        timm_model_ids=[DINOV2_REG4, SIGLIP_224],
        timm_override_act_layers=[None, None],
        image_sizes=[112, 112],
        timm_model_kwargs=[
            # LayerScale starts at 0.1 instead of DINOv2's 1e-5 so that a from-scratch tiny ViT trains in minutes.
            {"embed_dim": 96, "depth": 4, "num_heads": 3, "init_values": 0.1},
            {"embed_dim": 96, "depth": 4, "num_heads": 3, "mlp_ratio": 4.0},
        ],
        hf_llm_id=None,
        # transformers' initializer_range 0.02 suits widths in the thousands (q·k logits of order 1 at 4096). At width
        # 128 it makes every attention uniform at init: the policy then predicts the median action for ~700 steps
        # before it starts to read the image and the state. 1/sqrt(width) leaves that plateau in ~100 steps.
        text_config=_llama(128, 384, 4, 4, initializer_range=128**-0.5),
        n_action_bins=256,
    )


_CONFIGS: dict[str, Callable[[], OpenVLAConfig]] = {
    "tiny": _tiny,
    "small": _small,
    "openvla-7b": _openvla_7b,
}


def model_config_names() -> list[str]:
    return list(_CONFIGS)


def get_model_config(name: str) -> OpenVLAConfig:
    """A fresh ``OpenVLAConfig`` for a named configuration (``params.yaml`` ``model.name``)."""
    if name not in _CONFIGS:
        close = difflib.get_close_matches(name, list(_CONFIGS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"model.name: unknown model config {name!r}{hint} (known: {', '.join(_CONFIGS)})")
    return _CONFIGS[name]()


def image_size_of(config: OpenVLAConfig) -> int:
    """The square input size of the vision backbone(s) in pixels (what the data pipeline resizes to)."""
    return int(config.image_sizes[0])


def set_action_options(
    config: OpenVLAConfig,
    *,
    action_head: str,
    parallel_decoding: bool,
    chunk: int,
    use_proprio: bool,
    statistics: dict,
    cameras: Sequence[str] | None = None,
    film: bool | None = None,
) -> OpenVLAConfig:
    """Apply ``params.yaml``'s action options (``model.action_head``, ``model.parallel_decoding``, ``data.chunk``,
    ``data.use_proprio``, ``data.cameras``, ``model.film``) to a config; D and the proprio size come from the
    dataset statistics. ``cameras`` / ``film`` None leave the config's own (``action_options_of`` reads them all).

    The L1 head always decodes in parallel (it reads the action slots), so ``action_head="l1"`` implies it.
    """
    entries = list(statistics.values())
    if not entries:
        raise ValueError("set_action_options: the statistics hold no dataset")
    dims = {len(e["action"]["q01"]) for e in entries}
    if len(dims) != 1:
        raise ValueError(f"the datasets of the mixture have different action dimensions {sorted(dims)}")
    config.action_head = action_head
    config.parallel_decoding = bool(parallel_decoding or action_head == "l1")
    config.action_chunk = int(chunk)
    config.action_dim = dims.pop()
    config.use_proprio = bool(use_proprio)
    if use_proprio:
        sizes = {len(e["proprio"]["q01"]) for e in entries}
        if len(sizes) != 1:
            raise ValueError(f"data.use_proprio: the datasets have different proprio sizes {sorted(sizes)}")
        config.proprio_dim = sizes.pop()
    if cameras is not None:
        roles = [str(c) for c in cameras]
        if hasattr(config, "set_cameras"):
            config.set_cameras(roles)  # num_images_in_input = len(roles)
        elif len(roles) != 1:
            raise ValueError(f"data.cameras: {roles} needs a model with num_images_in_input (one camera here)")
    if film is not None:
        config.use_film = bool(film)
    config.validate_action_options()
    return config


def action_options_of(params: Any) -> dict[str, Any]:
    """The keyword arguments of ``set_action_options`` that ``params.yaml`` (a ``Params``) asks for."""
    return {
        "action_head": params.model.action_head,
        "parallel_decoding": params.model.parallel_decoding,
        "chunk": params.data.chunk,
        "use_proprio": params.data.use_proprio,
        "cameras": list(getattr(params.data, "cameras", None) or ["primary"]),
        "film": bool(getattr(params.model, "film", False)),
    }


# What fine-tuning may change in a trained model (new modules start fresh and train in full) …
BRIDGEABLE_KEYS = (
    "action_head",
    "parallel_decoding",
    "action_chunk",
    "action_dim",
    "use_proprio",
    "proprio_dim",
    "num_images_in_input",
    "camera_roles",
    "use_film",
)
# … and what it cannot: the weights of another vision backbone, image size or LLM do not exist in the base.
ARCHITECTURE_KEYS = ("timm_model_ids", "timm_model_kwargs", "image_sizes", "use_fused_vision_backbone")
TEXT_ARCHITECTURE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


def architecture_mismatch(config: OpenVLAConfig, reference: OpenVLAConfig) -> list[str]:
    """``key: config value vs reference value`` for every architecture key where the two differ."""
    out = []
    for key in ARCHITECTURE_KEYS:
        have, want = getattr(config, key, None), getattr(reference, key, None)
        if (have or None) != (want or None):  # [] and None both mean "no overrides"
            out.append((key, have, want))
    for key in TEXT_ARCHITECTURE_KEYS:
        have, want = getattr(config.text_config, key, None), getattr(reference.text_config, key, None)
        if have != want:
            out.append((f"text_config.{key}", have, want))
    return [f"{key}: the base has {have!r}, model.name's config has {want!r}" for key, have, want in out]


def bridge_action_options(
    base_config: OpenVLAConfig, params: Any, statistics: dict, base_dir: str | Path = "finetune.base"
) -> tuple[OpenVLAConfig, list[str]]:
    """The base model's config with ``params.yaml``'s action options (a copy), and what changed.

    Fine-tuning may give a base options it was not trained with (OpenVLA-OFT fine-tunes openvla-7b into L1 + chunks
    + proprio + two images, FiLM for OFT+): the head, K, proprio, the cameras and FiLM are config keys whose modules
    the loader then creates fresh. The vision backbone, image size and LLM cannot change (their weights are the
    base): where the base differs from ``model.name``'s configuration on one of those, a ``ValueError`` names
    ``base_dir`` and the key. ``changes`` reads ``key: old → new``.
    """
    import copy

    reference = get_model_config(params.model.name)
    problems = architecture_mismatch(base_config, reference)
    if problems:
        raise ValueError(
            f"{Path(base_dir) / 'config.json'}: the base cannot be fine-tuned into params.yaml's model "
            f"(model.name {params.model.name!r}): {'; '.join(problems)}. Fine-tuning can add action options "
            f"(model.action_head, data.chunk, data.use_proprio, data.cameras, model.film) but not change the "
            f"vision backbone, image size or LLM: set model.name to the base's configuration"
        )
    config = copy.deepcopy(base_config)
    before = {key: copy.deepcopy(getattr(config, key, None)) for key in BRIDGEABLE_KEYS}
    set_action_options(config, **action_options_of(params), statistics=statistics)
    changes = []
    for key in BRIDGEABLE_KEYS:
        after = getattr(config, key, None)
        if after != before[key] and not (key == "proprio_dim" and not config.use_proprio):
            changes.append(f"{key}: {before[key]!r} → {after!r}")
    return config, changes


def action_options_mismatch(config: OpenVLAConfig, params: object) -> list[str]:
    """Where a trained model's action options differ from ``params`` (what ``bridge_action_options`` changes)."""
    options = action_options_of(params)
    want = {
        "action_head": options["action_head"],
        "parallel_decoding": bool(options["parallel_decoding"] or options["action_head"] == "l1"),
        "action_chunk": options["chunk"],
        "use_proprio": options["use_proprio"],
        "num_images_in_input": len(options["cameras"]),
        "use_film": options["film"],
    }
    return [f"{key}: model has {getattr(config, key, default)!r}, params.yaml asks {value!r}"
            for (key, value), default in zip(want.items(), (None, None, None, None, 1, False), strict=True)
            if getattr(config, key, default) != value]  # fmt: skip
