"""What eval-libero runs in its worker processes: the model's ``Policy``, a remote one, or the random floor.

Workers are separate processes, so a policy travels as a picklable ``PolicySpec`` and each worker builds its own with
``build_policy``. All three kinds answer ``act(observation, session=…)`` with one (D,) action in the training
convention (gripper in [0, 1], 1 = open) and ``reset(session)`` at the start of an episode:

* ``model``: ``openvla.policy.Policy`` over an exported directory, executing chunks as ``eval_libero.execution`` says.
* ``server``: ``openvla.serve.RemotePolicy``, the same observations sent raw to an ``/act`` server over HTTP.
* ``random``: ``RandomPolicy``, uniform actions — xyz/rotation in the dataset's [q01, q99] range (what a uniform
  draw in the normalized [−1, 1] range unnormalizes to under BOUNDS_Q99), gripper in [0, 1]; without statistics,
  uniform in [−1, 1]. The floor any trained policy must beat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

ACTION_DIM = 7


class RandomPolicy:
    """Uniform random actions (see the module docstring), one per ``act``."""

    def __init__(self, action_stats: dict | None = None, *, seed: int = 0) -> None:
        low = np.full(ACTION_DIM, -1.0)
        high = np.full(ACTION_DIM, 1.0)
        if action_stats is not None:
            mask = np.asarray(action_stats.get("mask", [True] * (ACTION_DIM - 1) + [False]), dtype=bool)
            q01, q99 = np.asarray(action_stats["q01"], float), np.asarray(action_stats["q99"], float)
            if q01.shape != (ACTION_DIM,):
                raise ValueError(
                    f"RandomPolicy: expected {ACTION_DIM}-D action statistics, got q01 of shape {q01.shape}"
                )
            low = np.where(mask, q01, low)
            high = np.where(mask, q99, high)
        low[-1], high[-1] = 0.0, 1.0  # gripper in the training convention
        self.low, self.high = low, high
        self.queries = 0
        self._rng = np.random.default_rng(seed)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self, session: str = "default") -> None:
        """Nothing to forget between episodes (``seed`` makes an episode reproducible)."""

    def act(self, observation: Any = None, *, session: str = "default") -> np.ndarray:
        return self._rng.uniform(self.low, self.high).astype(np.float32)


@dataclass(frozen=True)
class PolicySpec:
    """How to build a policy inside a worker process."""

    kind: Literal["model", "server", "random"] = "model"
    model_dir: str = ""  # model: Hugging Face directory (models/<name>-hf)
    server_url: str = ""  # server: http://host:port of an `openvla serve`
    unnorm_key: str = ""  # dataset key of the statistics ("" = the model's only one)
    center_crop: bool | None = None  # model: override of the model's own centre crop (None = the model's)
    execution: str = "ensemble"  # model, server: chunk execution (open_loop | ensemble)
    ensemble_decay: float = 0.01
    open_loop_steps: int = 0  # open_loop: actions executed per chunk before the next query (0 = all)
    stats_path: str = ""  # random: dataset_statistics.json giving the action range ("" = [-1, 1])
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # torch threads per worker (0 = leave torch's default)


def load_action_stats(path: str | Path, key: str = "") -> dict:
    """``{dataset: {"action": ...}}`` JSON → one dataset's action statistics (``key`` may be omitted if only one)."""
    stats = json.loads(Path(path).read_text())
    if not key:
        if len(stats) != 1:
            raise ValueError(f"{path}: holds {sorted(stats)}; name one with eval_libero.unnorm_key")
        key = next(iter(stats))
    if key not in stats:
        raise ValueError(f"{path}: no dataset {key!r}; available: {sorted(stats)}")
    return stats[key]["action"]


def build_policy(spec: PolicySpec) -> Any:
    """Build the policy a spec describes (called once per worker process)."""
    if spec.threads > 0:
        import torch

        torch.set_num_threads(spec.threads)
    if spec.kind == "random":
        stats = load_action_stats(spec.stats_path, spec.unnorm_key) if spec.stats_path else None
        return RandomPolicy(stats, seed=spec.seed)
    if spec.kind == "model":
        from openvla.policy import Policy

        return Policy.from_pretrained(
            spec.model_dir,
            device=spec.device,
            unnorm_key=spec.unnorm_key or None,
            center_crop=spec.center_crop,
            execution=spec.execution,
            ensemble_decay=spec.ensemble_decay,
            open_loop_steps=spec.open_loop_steps,
        )
    if spec.kind == "server":
        from openvla.serve.client import RemotePolicy

        return RemotePolicy(
            spec.server_url,
            unnorm_key=spec.unnorm_key or None,
            execution=spec.execution,
            ensemble_decay=spec.ensemble_decay,
            open_loop_steps=spec.open_loop_steps,
        )
    raise ValueError(f"unknown policy kind {spec.kind!r}; expected 'model', 'server' or 'random'")
