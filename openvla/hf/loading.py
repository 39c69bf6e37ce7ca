"""Loading an exported (or official-format) directory: the one path evaluation and serving share.

``load_exported`` resolves device and dtype (``resolve_device_dtype``: auto = CUDA when present, bf16 there and fp32 on
CPU), loads model and processor through transformers' Auto classes (registered by ``import openvla``), attaches the
fitted action tokenizer and moves the model to the device in eval mode.

A model trained with a non-uniform action tokenizer (``bins.scheme: quantile``) must decode with the same bins.
Training writes it to ``<checkpoint>/action_tokenizer/``, the export copies it, and ``attach_action_tokenizer``
sets it on a model loaded from such a directory (without it the model decodes with OpenVLA's uniform bins, which
is right for uniform-bin models and for official checkpoints, which have no such folder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ACTION_TOKENIZER_DIR = "action_tokenizer"  # the folder name training writes (openvla/train/vla.py)
DTYPES = ("float32", "bfloat16", "float16")


def resolve_device_dtype(device: str = "auto", dtype: str = "auto", key: str = "dtype") -> tuple[Any, Any]:
    """``(torch.device, torch.dtype)``; ``key`` names the setting in the error message (e.g. ``eval_bridge.dtype``)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"{key}: expected auto, {', '.join(DTYPES[:-1])} or {DTYPES[-1]}, got {dtype!r}")
    return torch.device(device), getattr(torch, dtype)


def load_exported(
    model_dir: str | Path, device: str = "auto", dtype: str = "auto", key: str = "dtype"
) -> tuple[Any, Any]:
    """``(model, processor)`` of an exported directory, on its device in eval mode, with its action tokenizer."""
    import openvla  # registers the Auto classes

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; pass an exported model directory (`openvla export`)")
    torch_device, torch_dtype = resolve_device_dtype(device, dtype, key)
    log.info("loading %s on %s (%s)", model_dir, torch_device, torch_dtype)
    model = openvla.AutoModelForImageTextToText.from_pretrained(
        str(model_dir), dtype=torch_dtype, low_cpu_mem_usage=True
    )
    processor = openvla.AutoProcessor.from_pretrained(str(model_dir))
    attach_action_tokenizer(model, model_dir)  # fitted (e.g. quantile) bins decode as in training
    return model.to(torch_device).eval(), processor


def attach_action_tokenizer(model: Any, directory: str | Path) -> Any:
    """Set ``model.action_tokenizer`` from ``directory/action_tokenizer`` when present; return the tokenizer used."""
    from openvla.actions.tokenizer import resolve_action_tokenizer

    folder = Path(directory) / ACTION_TOKENIZER_DIR
    tokenizer = resolve_action_tokenizer(folder, model.config.base_vocab_size, model.config.n_action_bins)
    model.action_tokenizer = tokenizer
    if folder.is_dir():
        log.info("action tokenizer from %s: %r", folder, tokenizer)
    return tokenizer
