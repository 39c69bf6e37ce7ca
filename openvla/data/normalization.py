"""Action / proprio normalization in TF, exactly DESIGN §5 (the numpy twin lives in ``openvla.actions``).

BOUNDS_Q99 (OpenVLA's default): where ``mask``, x' = clip(2·(x − q01)/(q99 − q01 + 1e−8) − 1, −1, 1), elsewhere x
unchanged; then dims whose min == max become 0. BOUNDS uses min/max instead of q01/q99; NORMAL is
(x − mean)/(std + 1e−8) where ``mask``. Proprio has no mask (all dims normalized).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from openvla.tf_import import import_tensorflow

NORMALIZATION_TYPES = ("bounds_q99", "bounds", "normal")
EPS = 1e-8


def normalize_tf(x, stats: Mapping[str, Any], kind: str = "bounds_q99"):
    """Normalize ``x`` [..., D] with one dataset's ``action`` (or ``proprio``) statistics entry."""
    tf = import_tensorflow()
    kind = kind.lower()
    if kind not in NORMALIZATION_TYPES:
        raise ValueError(f"normalization kind {kind!r} unknown; expected one of {NORMALIZATION_TYPES}")
    x = tf.cast(x, tf.float32)
    dim = len(stats["mean"])
    mask = tf.constant(np.asarray(stats.get("mask", [True] * dim), dtype=bool))
    if kind == "normal":
        mean = tf.constant(stats["mean"], tf.float32)
        std = tf.constant(stats["std"], tf.float32)
        out = tf.where(mask, (x - mean) / (std + EPS), x)
    else:
        low_key, high_key = ("q01", "q99") if kind == "bounds_q99" else ("min", "max")
        low = tf.constant(stats[low_key], tf.float32)
        high = tf.constant(stats[high_key], tf.float32)
        out = tf.where(mask, tf.clip_by_value(2.0 * (x - low) / (high - low + EPS) - 1.0, -1.0, 1.0), x)
        constant = tf.constant(np.asarray(stats["min"]) == np.asarray(stats["max"]))
        out = tf.where(constant, tf.zeros_like(out), out)
    return out


def normalize_trajectory(traj: dict, stats: Mapping[str, Any], kind: str = "bounds_q99") -> dict:
    """Normalize ``action`` and ``observation/proprio`` of a standardized trajectory with its dataset's stats."""
    traj["action"] = normalize_tf(traj["action"], stats["action"], kind)
    if "proprio" in traj["observation"]:
        traj["observation"]["proprio"] = normalize_tf(traj["observation"]["proprio"], stats["proprio"], kind)
    return traj
