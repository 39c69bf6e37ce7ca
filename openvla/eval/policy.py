"""Policies the LIBERO harness can run, behind one small protocol (the team contract's policy API).

A policy has ``predict(image, instruction, proprio) -> (K, 7)``: ``image`` is the processed uint8 H×W×3 agentview
frame (``openvla.eval.preprocess.prepare_image``), ``proprio`` the (8,) eef pose + finger positions, and the result K
unnormalized actions in the training convention (gripper in [0, 1], 1 = open). ``image_size`` says what size the
frame must have. An optional ``reset(seed)`` is called before each episode.

* ``VLAPolicy`` wraps an OpenVLA-style model (``predict_action``) and its processor (prompt + image → inputs).
* ``RandomPolicy`` is the floor any trained policy must beat: xyz/rotation uniform in the dataset's
  [q01, q99] range — what a uniform draw in the normalized [−1, 1] range unnormalizes to under BOUNDS_Q99 — and the
  gripper uniform in [0, 1]; without statistics, uniform in [−1, 1] (the whole OSC_POSE range).

Workers of the harness are separate processes, so a policy travels as a picklable ``PolicySpec`` and each worker
builds its own with ``build_policy``.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

ACTION_DIM = 7


@runtime_checkable
class Policy(Protocol):
    image_size: int

    def predict(self, image: np.ndarray, instruction: str, proprio: np.ndarray | None = None) -> np.ndarray: ...


class RandomPolicy:
    """Uniform random actions (see the module docstring); ``chunk`` actions per query."""

    def __init__(self, action_stats: dict | None = None, *, chunk: int = 1, image_size: int = 224, seed: int = 0):
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
        self.chunk = chunk
        self.image_size = image_size
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def predict(self, image: np.ndarray, instruction: str, proprio: np.ndarray | None = None) -> np.ndarray:
        return self._rng.uniform(self.low, self.high, size=(self.chunk, ACTION_DIM))


class VLAPolicy:
    """Adapter from an OpenVLA-style model + processor to the policy protocol.

    ``model.predict_action(input_ids=..., pixel_values=..., attention_mask=..., unnorm_key=..., do_sample=False)``
    returns (action_dim,) or (K·action_dim,) unnormalized actions; ``processor(prompt, image)`` builds its inputs.
    The prompt is OpenVLA's (``openvla.model.prompts.build_action_prompt`` for the model's LLM backbone).
    """

    def __init__(self, model: Any, processor: Any, *, unnorm_key: str | None = None, device: str = "cpu") -> None:
        self.model = model
        self.processor = processor
        self.unnorm_key = unnorm_key or None
        self.device = device
        config = getattr(model, "config", None)
        sizes = getattr(config, "image_sizes", None) or [224]
        self.image_size = int(sizes[0])
        self.llm_backbone_id = getattr(config, "llm_backbone_id", "llama2-7b-pure")
        self.use_proprio = bool(getattr(config, "use_proprio", False))
        self._accepts_proprio = "proprio" in inspect.signature(model.predict_action).parameters

    def prompt(self, instruction: str) -> str:
        from openvla.model.prompts import build_action_prompt

        return build_action_prompt(instruction, self.llm_backbone_id)

    def predict(self, image: np.ndarray, instruction: str, proprio: np.ndarray | None = None) -> np.ndarray:
        from PIL import Image

        inputs = self.processor(self.prompt(instruction), Image.fromarray(np.asarray(image, dtype=np.uint8)))
        if hasattr(inputs, "to"):
            inputs = inputs.to(self.device)
        kwargs: dict[str, Any] = {}
        if self.use_proprio and self._accepts_proprio and proprio is not None:
            kwargs["proprio"] = proprio
        action = self.model.predict_action(**inputs, unnorm_key=self.unnorm_key, do_sample=False, **kwargs)
        action = np.asarray(action, dtype=np.float64)
        if action.size % ACTION_DIM:
            raise ValueError(f"VLAPolicy: model returned {action.size} values, not a multiple of {ACTION_DIM}")
        return action.reshape(-1, ACTION_DIM)


@dataclass(frozen=True)
class PolicySpec:
    """How to build a policy inside a worker process."""

    kind: Literal["model", "random"] = "model"
    model_dir: str = ""  # model: Hugging Face directory (models/<name>-hf)
    unnorm_key: str = ""  # model: dataset key of its statistics ("" = the only one)
    stats_path: str = ""  # random: dataset_statistics.json giving the action range ("" = [-1, 1])
    chunk: int = 1  # random: actions per query
    image_size: int = 224  # random: size of the frame it is given (it ignores it)
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


def load_vla_policy(model_dir: str | Path, unnorm_key: str = "", device: str = "cpu") -> VLAPolicy:
    """Load ``models/<name>-hf`` with transformers' Auto classes (fp32 on CPU, bf16 on CUDA)."""
    from openvla.hf.loading import load_exported

    model, processor = load_exported(model_dir, device)
    return VLAPolicy(model, processor, unnorm_key=unnorm_key, device=str(model.device))


def build_policy(spec: PolicySpec) -> Policy:
    """Build the policy a spec describes (called once per worker process)."""
    if spec.threads > 0:
        import torch

        torch.set_num_threads(spec.threads)
    if spec.kind == "random":
        stats = load_action_stats(spec.stats_path, spec.unnorm_key) if spec.stats_path else None
        return RandomPolicy(stats, chunk=spec.chunk, image_size=spec.image_size, seed=spec.seed)
    if spec.kind == "model":
        return load_vla_policy(spec.model_dir, spec.unnorm_key, spec.device)
    raise ValueError(f"unknown policy kind {spec.kind!r}; expected 'model' or 'random'")
