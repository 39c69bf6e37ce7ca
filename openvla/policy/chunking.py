"""Executing action chunks: a policy may predict K future actions per query (K = 1 for OpenVLA).

* ``OpenLoopExecutor``: query, execute the K actions one after the other, query again (OpenVLA-OFT's way).
* ``TemporalEnsembleExecutor``: query every step and execute, for step t, a weighted average of every prediction
  made so far for t (ACT's temporal ensembling). With predictions for t made at steps s ≤ t, ordered from the
  oldest (i = 0) to the newest, the weights are w_i = exp(−m·i), normalized: m > 0 favours older predictions,
  which smooths the motion (ACT uses m = 0.01, close to a plain average); m < 0 favours newer ones. At most K
  predictions cover one step.

Both work in the policy's convention (gripper in [0, 1]); the LIBERO gripper mapping is applied after, so an
averaged gripper value is binarized like a single one.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# How a policy's chunks are executed: "chunk" = not at all (the caller gets the (K, D) chunk), or one executor kind.
EXECUTIONS = ("chunk", "open_loop", "ensemble")


def ensemble_weights(n: int, decay: float) -> np.ndarray:
    """Normalized weights (n,) of n predictions for one step, oldest first: exp(−decay·i) / Σ."""
    w = np.exp(-decay * np.arange(n, dtype=np.float64))
    return w / w.sum()


class OpenLoopExecutor:
    """Execute each predicted chunk to its end (or its first ``horizon`` actions) before the next query."""

    def __init__(self, horizon: int = 0) -> None:
        if horizon < 0:
            raise ValueError(f"open_loop_steps must be ≥ 0 (0 = the whole chunk), got {horizon}")
        self.horizon = horizon  # 0 = the whole chunk
        self._queue: deque[np.ndarray] = deque()

    def reset(self) -> None:
        self._queue.clear()

    def wants_query(self) -> bool:
        return not self._queue

    def push(self, chunk: np.ndarray) -> None:
        chunk = np.atleast_2d(np.asarray(chunk, dtype=np.float64))
        if self.horizon > 0:
            chunk = chunk[: self.horizon]
        self._queue.extend(chunk)

    def pop(self) -> np.ndarray:
        if not self._queue:
            raise RuntimeError("OpenLoopExecutor.pop: no action queued; push a chunk first")
        return self._queue.popleft()


class TemporalEnsembleExecutor:
    """Query every step; execute the exponentially weighted average of all predictions for the current step."""

    def __init__(self, decay: float = 0.01) -> None:
        self.decay = decay
        self._step = 0
        self._chunks: list[tuple[int, np.ndarray]] = []  # (step the chunk starts at, (K, D) actions), oldest first

    def reset(self) -> None:
        self._step = 0
        self._chunks.clear()

    def wants_query(self) -> bool:
        return True

    def push(self, chunk: np.ndarray) -> None:
        self._chunks.append((self._step, np.atleast_2d(np.asarray(chunk, dtype=np.float64))))

    def pop(self) -> np.ndarray:
        preds = [c[self._step - start] for start, c in self._chunks if 0 <= self._step - start < len(c)]
        if not preds:
            raise RuntimeError("TemporalEnsembleExecutor.pop: no prediction covers this step; push a chunk first")
        action = ensemble_weights(len(preds), self.decay) @ np.stack(preds)
        self._step += 1
        self._chunks = [(s, c) for s, c in self._chunks if self._step - s < len(c)]  # drop chunks that ended
        return action


def make_executor(kind: str, decay: float = 0.01, horizon: int = 0) -> OpenLoopExecutor | TemporalEnsembleExecutor:
    """``kind`` is an execution other than "chunk": "open_loop" or "ensemble"."""
    if kind == "open_loop":
        return OpenLoopExecutor(horizon)
    if kind == "ensemble":
        return TemporalEnsembleExecutor(decay)
    raise ValueError(f"unknown chunk execution {kind!r}; expected 'open_loop' or 'ensemble'")
