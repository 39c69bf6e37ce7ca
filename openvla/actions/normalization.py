"""Action / proprio normalization with a dataset's statistics (DESIGN §5), in numpy.

The training pipeline normalizes in TensorFlow (``openvla.data``); evaluation, serving and the ``bins`` stage use
these numpy functions, which follow the same formulas so that a model sees the same numbers everywhere:

* ``bounds_q99`` (OpenVLA's default): where ``mask``, ``x' = clip(2·(x − q01)/(q99 − q01 + 1e−8) − 1, −1, 1)``.
* ``bounds``: the same with ``min``/``max``.
* ``normal``: where ``mask``, ``x' = (x − mean)/(std + 1e−8)``.

Dimensions outside the mask pass unchanged (OpenVLA: the gripper, already in [0, 1]). For the two bounds kinds,
dimensions whose ``min == max`` (unused action dimensions) become exactly 0 afterwards — OpenVLA tests ``min == max``
for ``bounds_q99`` too (not ``q01 == q99``), and so do we. ``normal`` has no such rule in OpenVLA. A missing
``mask`` means every dimension is normalized.

``unnormalize`` is OpenVLA's ``predict_action`` inverse: where ``mask``, ``x = 0.5·(x' + 1)·(high − low) + low``
(no ``1e−8``), else ``x'``; for ``normal``, ``x = x'·(std + 1e−8) + mean``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

NormalizationKind = Literal["bounds_q99", "bounds", "normal"]
NORMALIZATION_KINDS: tuple[str, ...] = ("bounds_q99", "bounds", "normal")
EPS = 1e-8  # OpenVLA's epsilon in the denominators

_BOUNDS_KEYS = {"bounds_q99": ("q01", "q99"), "bounds": ("min", "max")}


class NormalizationError(ValueError):
    """Unknown normalization kind or statistics that lack a needed key / have the wrong length."""


def _check_kind(kind: str) -> str:
    if kind not in NORMALIZATION_KINDS:
        raise NormalizationError(
            f"unknown normalization kind {kind!r}; expected one of {', '.join(NORMALIZATION_KINDS)}"
        )
    return kind


def _stat(stats: Mapping[str, Any], key: str, dim: int) -> np.ndarray:
    if key not in stats:
        raise NormalizationError(f"statistics have no {key!r} entry (keys: {', '.join(sorted(stats))})")
    value = np.asarray(stats[key], dtype=np.float64)
    if value.shape != (dim,):
        raise NormalizationError(
            f"statistics {key!r} has shape {value.shape}, expected ({dim},) for data of that last dim"
        )
    return value


def _mask(stats: Mapping[str, Any], dim: int) -> np.ndarray:
    if stats.get("mask") is None:
        return np.ones(dim, dtype=bool)
    mask = np.asarray(stats["mask"], dtype=bool)
    if mask.shape != (dim,):
        raise NormalizationError(f"statistics 'mask' has shape {mask.shape}, expected ({dim},)")
    return mask


def _as_float(x: Any) -> tuple[np.ndarray, np.dtype]:
    arr = np.asarray(x)
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float32)
    if arr.ndim == 0:
        raise NormalizationError("expected an array whose last axis is the action/proprio dimension, got a scalar")
    return arr.astype(np.float64), out_dtype


def normalize(x: Any, stats: Mapping[str, Any], kind: NormalizationKind | str = "bounds_q99") -> np.ndarray:
    """Normalize ``x`` (..., D) with one dataset's ``"action"`` (or ``"proprio"``) statistics; keeps float dtype."""
    _check_kind(kind)
    arr, out_dtype = _as_float(x)
    dim = arr.shape[-1]
    mask = _mask(stats, dim)
    if kind == "normal":
        mean, std = _stat(stats, "mean", dim), _stat(stats, "std", dim)
        out = np.where(mask, (arr - mean) / (std + EPS), arr)
    else:
        low_key, high_key = _BOUNDS_KEYS[kind]
        low, high = _stat(stats, low_key, dim), _stat(stats, high_key, dim)
        out = np.where(mask, np.clip(2.0 * (arr - low) / (high - low + EPS) - 1.0, -1.0, 1.0), arr)
        unused = _stat(stats, "min", dim) == _stat(stats, "max", dim)
        out = np.where(unused, 0.0, out)
    return out.astype(out_dtype)


def unnormalize(x: Any, stats: Mapping[str, Any], kind: NormalizationKind | str = "bounds_q99") -> np.ndarray:
    """Map normalized values (..., D) back to dataset units (OpenVLA's ``predict_action`` formula)."""
    _check_kind(kind)
    arr, out_dtype = _as_float(x)
    dim = arr.shape[-1]
    mask = _mask(stats, dim)
    if kind == "normal":
        mean, std = _stat(stats, "mean", dim), _stat(stats, "std", dim)
        out = np.where(mask, arr * (std + EPS) + mean, arr)
    else:
        low_key, high_key = _BOUNDS_KEYS[kind]
        low, high = _stat(stats, low_key, dim), _stat(stats, high_key, dim)
        out = np.where(mask, 0.5 * (arr + 1.0) * (high - low) + low, arr)
    return out.astype(out_dtype)
