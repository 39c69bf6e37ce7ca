"""Offline action metrics: predicted vs true actions of held-out frames (numpy only, no model, no TensorFlow).

What a robot-free evaluation can measure (DESIGN §11 "Without a robot"): the per-dimension L1 error in the dataset's
own units (metres / radians per step for Bridge) and in the model's normalized space ([-1, 1] with BOUNDS_Q99, the
gripper in [0, 1]), how often the binarized gripper command is right, and how often the greedy action token equals
the token of the true action (the training objective's accuracy, DESIGN §7).

    metrics = action_metrics(pred, true, pred_norm, true_norm, pred_tokens, true_tokens)
    metrics["l1.x"], metrics["token_accuracy"], metrics["gripper_accuracy"]

Every input is (N, D) over N frames. Keys are flat (``l1.<dim>``) so that the same dict goes to ``metrics/*.json``
(``dvc metrics show``) and to MLflow.

Chunked models (K actions per query) are compared on the chunk's first action above; ``chunk_l1`` adds the L1 of
the whole chunk in normalized space against the recorded actions t … t+K−1, built by ``chunk_targets`` with the
indices clamped at the episode's last step (what the training pipeline's ``chunk_window`` does):

    metrics |= chunk_l1(pred_chunks, np.concatenate([chunk_targets(a, K) for a in episodes_normalized]))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EEF_DIM_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")  # EEF_POS 7-D: xyz + rpy deltas + gripper
GRIPPER_THRESHOLD = 0.5  # model convention: gripper in [0, 1], 1 = open; > 0.5 counts as "open"


def dim_names(action_dim: int) -> list[str]:
    """Readable names of the action dimensions (EEF_POS for 7-D, ``dim<i>`` otherwise; the last is the gripper)."""
    if action_dim == len(EEF_DIM_NAMES):
        return list(EEF_DIM_NAMES)
    return [f"dim{i}" for i in range(action_dim - 1)] + ["gripper"]


def _check(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"action_metrics: {name} has shape {array.shape}, expected {shape} (frames, action_dim)")
    return array


def binarize_gripper(gripper: np.ndarray, threshold: float = GRIPPER_THRESHOLD) -> np.ndarray:
    """Open (True) / closed (False) from a gripper value in the model convention (1 = open)."""
    return np.asarray(gripper) > threshold


def action_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    pred_normalized: np.ndarray,
    true_normalized: np.ndarray,
    pred_tokens: np.ndarray,
    true_tokens: np.ndarray,
    names: Sequence[str] | None = None,
    gripper_index: int = -1,
) -> dict[str, float]:
    """Summary metrics over N frames. ``pred``/``true``: unnormalized (N, D); ``*_normalized``: (N, D) in the
    model's normalized space; ``*_tokens``: (N, D) action token ids. Returns flat keys:

    ``frames``; ``l1`` / ``l1.<dim>`` (original units); ``l1_normalized`` / ``l1_normalized.<dim>``;
    ``gripper_accuracy`` (binarized at 0.5); ``token_accuracy`` / ``token_accuracy.<dim>`` (greedy token == the
    true action's token); ``token_all_correct`` (fraction of frames whose D tokens are all right).
    """
    true = np.asarray(true, dtype=np.float64)
    if true.ndim != 2 or true.shape[0] == 0:
        raise ValueError(f"action_metrics: expected (frames, action_dim) with frames > 0, got {true.shape}")
    shape = true.shape
    pred = _check("pred", pred, shape).astype(np.float64)
    pred_normalized = _check("pred_normalized", pred_normalized, shape).astype(np.float64)
    true_normalized = _check("true_normalized", true_normalized, shape).astype(np.float64)
    pred_tokens = _check("pred_tokens", pred_tokens, shape)
    true_tokens = _check("true_tokens", true_tokens, shape)
    names = list(names) if names is not None else dim_names(shape[1])
    if len(names) != shape[1]:
        raise ValueError(f"action_metrics: {len(names)} dim names for action_dim {shape[1]}")

    l1 = np.abs(pred - true).mean(axis=0)  # (D,)
    l1_norm = np.abs(pred_normalized - true_normalized).mean(axis=0)
    token_hits = pred_tokens == true_tokens  # (N, D)
    gripper_hits = binarize_gripper(pred[:, gripper_index]) == binarize_gripper(true[:, gripper_index])

    out: dict[str, float] = {"frames": int(shape[0])}
    out["l1"] = float(l1.mean())
    out["l1_normalized"] = float(l1_norm.mean())
    out["gripper_accuracy"] = float(gripper_hits.mean())
    out["token_accuracy"] = float(token_hits.mean())
    out["token_all_correct"] = float(token_hits.all(axis=1).mean())
    for i, name in enumerate(names):
        out[f"l1.{name}"] = float(l1[i])
    for i, name in enumerate(names):
        out[f"l1_normalized.{name}"] = float(l1_norm[i])
    for i, name in enumerate(names):
        out[f"token_accuracy.{name}"] = float(token_hits[:, i].mean())
    return out


def chunk_targets(actions: np.ndarray, chunk: int) -> np.ndarray:
    """The recorded chunk of every step of ONE episode: (T, D) → (T, K, D), ``out[t, k] = actions[min(t + k, T − 1)]``
    (clamped at the last step, as the training pipeline builds its targets)."""
    actions = np.asarray(actions)
    if actions.ndim != 2 or len(actions) == 0 or chunk < 1:
        raise ValueError(f"chunk_targets: expected (steps > 0, action_dim) and chunk ≥ 1, got {actions.shape}, {chunk}")
    index = np.minimum(np.arange(len(actions))[:, None] + np.arange(chunk)[None, :], len(actions) - 1)
    return actions[index]


def chunk_l1(pred_chunks: np.ndarray, true_chunks: np.ndarray) -> dict[str, float]:
    """L1 of predicted vs recorded chunks, both (N, K, D) in normalized space: ``chunk_l1_normalized`` (mean over
    frames, chunk steps and dimensions) and ``chunk_l1_normalized.step<k>`` (mean over frames and dimensions of the
    k-th action of the chunks; step0 is the current step, i.e. ``l1_normalized``)."""
    true_chunks = np.asarray(true_chunks, dtype=np.float64)
    if true_chunks.ndim != 3 or true_chunks.shape[0] == 0:
        raise ValueError(f"chunk_l1: expected (frames, chunk, action_dim) with frames > 0, got {true_chunks.shape}")
    pred_chunks = np.asarray(pred_chunks, dtype=np.float64)
    if pred_chunks.shape != true_chunks.shape:
        raise ValueError(f"chunk_l1: pred_chunks has shape {pred_chunks.shape}, expected {true_chunks.shape}")
    error = np.abs(pred_chunks - true_chunks)
    out = {"chunk_l1_normalized": float(error.mean())}
    for k, value in enumerate(error.mean(axis=(0, 2))):
        out[f"chunk_l1_normalized.step{k}"] = float(value)
    return out
