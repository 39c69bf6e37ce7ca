"""Validation while training: the held-out split every ``eval_every`` steps (``pretrain`` and ``finetune``).

Which frames: the held-out split of every dataset of the mixture as the loader defines it (the builder's ``val``
split, or the last 5% of ``train`` — the last episode for a tiny dataset — when there is none: ``resolve_split`` in
``openvla.data.loader``, the same rule ``eval-bridge`` and the training stream, which trains on the rest, use).
``make_dataset(train=False, split="val")`` reads them in file order, shuffles frames once with the stage's seed and
a fixed buffer (so a few batches span several episodes), and the first ``eval_batches × batch_size`` frames are
kept, decoded without augmentation and batched once: every validation sees exactly the same frames.

What is measured (on the same forward as training, teacher-forced for the token-by-token head, as OpenVLA's own
validation does):

- ``val/action_l1``: mean |predicted − true| over the chunk's K·D values in the normalized action space; the
  prediction is the L1 head's output or the decoded greedy action tokens (FAST ids decode per chunk, not per
  value: no L1 for them);
- ``val/gripper_acc``: the last action dimension on the same side of its midpoint as the truth (0.5 when the
  statistics leave the gripper unnormalized in [0, 1], as BOUNDS_Q99 does; 0 when its mask normalizes it to
  [−1, 1]), over the K steps;
- ``val/token_acc``: greedy action token == the true action's token (tokens head only);
- ``val/loss``: the training loss on these frames.

Distributed: FSDP needs every rank in every forward, so every rank evaluates the same number of batches: each held-
out batch is split into equal per-rank slices (``batch_size`` divides by the process count), the sums are
gathered, and every rank gets the same metrics.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from openvla.config import DataConfig
from openvla.train.distributed import DistInfo, all_gather_objects
from openvla.train.metrics import merge_sums

log = logging.getLogger(__name__)

VAL_PREFIX = "val/"
EVAL_SHUFFLE_BUFFER = 1000  # frames: the held-out frames are drawn from the first ~1000 of the split (file order)
LOWER_IS_BETTER = ("action_l1", "loss")


def held_out_frames(
    *,
    data_dir: str | Path,
    mixture: str,
    statistics: Mapping[str, Any],
    data_cfg: DataConfig,
    image_size: int,
    num_frames: int,
    seed: int,
    cameras: Sequence[str] = ("primary",),
) -> list[dict[str, Any]]:
    """The first ``num_frames`` held-out frames (nested numpy dicts as the training stream yields them), with the
    images of ``cameras`` (the roles the model reads).

    Deterministic: no augmentation, the split's file order, one seeded shuffle (tf.data runs deterministically).
    """
    from openvla.data import make_dataset

    dataset = make_dataset(
        str(data_dir),
        mixture,
        statistics=dict(statistics),
        train=False,
        split="val",
        image_size=image_size,
        window_size=data_cfg.window_size,
        chunk=data_cfg.chunk,
        shuffle_buffer=min(EVAL_SHUFFLE_BUFFER, max(1, data_cfg.shuffle_buffer)),
        image_augmentation=False,
        seed=seed,
        balance_weights=data_cfg.balance_weights,
        num_parallel_calls=1,
        num_parallel_reads=1,
        load_camera_views=tuple(cameras),
    )
    return list(dataset.take(num_frames).as_numpy_iterator())


def rank_slices(n_frames: int, batch_size: int, info: DistInfo) -> list[tuple[int, int]]:
    """(start, stop) frame ranges of this rank's batches: every rank gets the same number of equal-sized slices
    (a last batch is trimmed to a multiple of the process count; what is left over is not evaluated)."""
    out = []
    for start in range(0, n_frames, batch_size):
        size = min(batch_size, n_frames - start)
        per = size // info.world_size
        if per == 0:
            break
        out.append((start + info.rank * per, start + (info.rank + 1) * per))
    return out


def gripper_thresholds(statistics: Mapping[str, Any]) -> dict[str, float]:
    """Per dataset, the midpoint of the normalized gripper range: 0.5 for an unnormalized [0, 1] gripper (mask
    false, OpenVLA's default), 0.0 when the mask normalizes it to [−1, 1]."""
    out = {}
    for name, entry in statistics.items():
        mask = entry.get("action", {}).get("mask")
        out[name] = 0.0 if mask is not None and bool(mask[-1]) else 0.5
    return out


class Validator:
    """Held-out metrics of a (wrapped) model, computed on the same frames every call; collective under torchrun."""

    def __init__(
        self,
        batches: Sequence[Mapping[str, Any]],
        frames: int,
        action_tokenizer: Any,
        device: torch.device,
        thresholds: Mapping[str, float],
        autocast_bf16: bool = False,
    ) -> None:
        self.batches = list(batches)
        self.frames = frames
        self.action_tokenizer = action_tokenizer
        self.device = device
        self.thresholds = dict(thresholds)
        self.autocast_bf16 = autocast_bf16

    @classmethod
    def build(
        cls,
        *,
        data_dir: str | Path,
        mixture: str,
        statistics: Mapping[str, Any],
        data_cfg: DataConfig,
        image_size: int,
        transform: Callable[[dict], dict],
        collator: Callable[[list[dict]], dict],
        batch_size: int,
        num_batches: int,
        seed: int,
        info: DistInfo,
        action_tokenizer: Any,
        autocast_bf16: bool = False,
    ) -> Validator:
        """Read, transform and batch the held-out frames once (this rank's slices of each global batch)."""
        cameras = tuple(getattr(transform, "cameras", ("primary",)))  # what the model reads, as the training loader
        frames = held_out_frames(data_dir=data_dir, mixture=mixture, statistics=statistics, data_cfg=data_cfg,
                                 image_size=image_size, num_frames=batch_size * num_batches, seed=seed,
                                 cameras=cameras)  # fmt: skip
        slices = rank_slices(len(frames), batch_size, info)
        if not slices:
            raise ValueError(f"validation: the held-out split of {mixture!r} under {data_dir} has {len(frames)} "
                             f"frames, fewer than the {info.world_size} processes; set eval_every: 0")  # fmt: skip
        batches = [collator([transform(frames[i]) for i in range(a, b)]) for a, b in slices]
        used = sum(b - a for a, b in slices) * info.world_size
        log.info("validation on %d held-out frames of %s (%d batches per rank)", used, mixture, len(batches))
        return cls(batches, used, action_tokenizer, info.device, gripper_thresholds(statistics), autocast_bf16)

    @classmethod
    def for_stage(
        cls,
        stage_cfg: Any,
        *,
        data_dir: str | Path,
        mixture: str,
        statistics: Mapping[str, Any],
        data_cfg: DataConfig,
        image_size: int,
        components: Any,
        info: DistInfo,
        autocast_bf16: bool = False,
    ) -> Validator | None:
        """The validator of a training stage, or None when it validates nothing (``eval_every: 0``).

        ``stage_cfg`` is the ``pretrain`` or ``finetune`` section (``eval_every``, ``eval_batches``, ``batch_size``,
        ``seed``); ``components`` the stage's ``VLAComponents`` (its transform, collator and action tokenizer), so
        that validation batches are made exactly as the training batches are.
        """
        if stage_cfg.eval_every <= 0:
            return None
        return cls.build(data_dir=data_dir, mixture=mixture, statistics=statistics, data_cfg=data_cfg,
                         image_size=image_size, transform=components.transform, collator=components.collator,
                         batch_size=stage_cfg.batch_size, num_batches=stage_cfg.eval_batches, seed=stage_cfg.seed,
                         info=info, action_tokenizer=components.action_tokenizer,
                         autocast_bf16=autocast_bf16)  # fmt: skip

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``val/*`` metrics of ``model`` (every rank must call: the forwards and the gather are collective)."""
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        try:
            with torch.no_grad():
                for batch in self.batches:
                    sums = merge_sums([sums, self.batch_sums(model, batch)])
        finally:
            model.train(was_training)
        return summarize_validation(merge_sums(all_gather_objects(sums)))

    def batch_sums(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, float]:
        """Sums of one batch: L1, gripper and token counts (see the module docstring)."""
        from openvla.train.vla import min_logits_to_keep, model_inputs

        inputs = model_inputs(batch, self.device)
        true = batch["actions"].double().cpu()  # (B, K, D) normalized
        bsz = true.shape[0]
        sums: dict[str, float] = {"rows": float(bsz)}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            if "action_labels" in inputs:  # parallel decoding: one forward over the K·D slots
                out = model(**inputs)
                ids, labels = None, inputs["action_labels"]
                if out.logits is not None:
                    ids = out.logits.argmax(dim=-1)
            else:
                keep = min_logits_to_keep(inputs["labels"])
                out = model(**inputs, logits_to_keep=keep)
                preds = out.logits[:, :-1].argmax(dim=-1)
                gt = inputs["labels"][:, inputs["labels"].shape[1] - keep + 1 :]
                mask = gt > self.action_tokenizer.action_token_begin_idx
                ids, labels = preds[mask], gt[mask]
        sums["loss_sum"] = float(out.loss.detach().float()) * bsz
        if ids is not None:
            sums["token_correct"] = float((ids == labels).sum())
            sums["token_count"] = float(labels.numel())
        pred = self._predicted_actions(out, ids, true.shape)
        if pred is not None:
            sums["l1_sum"] = float((pred - true).abs().sum())
            sums["l1_count"] = float(true.numel())
            names = batch.get("dataset_names") or [""] * bsz
            thresholds = torch.tensor([self.thresholds.get(_text(n), 0.5) for n in names], dtype=torch.float64)
            same = (pred[..., -1] > thresholds[:, None]) == (true[..., -1] > thresholds[:, None])
            sums["gripper_correct"] = float(same.sum())
            sums["gripper_count"] = float(same.numel())
        return sums

    def _predicted_actions(self, out: Any, ids: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
        """(B, K, D) normalized predictions: the L1 head's, or the decoded tokens (None for FAST ids)."""
        if getattr(out, "actions", None) is not None:
            return out.actions.detach().double().cpu().reshape(shape)
        if ids is None or getattr(self.action_tokenizer, "scheme", None) == "fast" or ids.numel() != math.prod(shape):
            return None
        ids = ids.reshape(shape).cpu().numpy()  # decode per dimension: a quantile tokenizer's bins differ per dim
        return torch.as_tensor(np.asarray(self.action_tokenizer.decode(ids)), dtype=torch.float64).reshape(shape)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def summarize_validation(sums: Mapping[str, float]) -> dict[str, float]:
    """Sums → ``val/*`` rates (a metric whose count is zero is left out)."""
    out: dict[str, float] = {}
    if sums.get("l1_count"):
        out[f"{VAL_PREFIX}action_l1"] = sums["l1_sum"] / sums["l1_count"]
    if sums.get("gripper_count"):
        out[f"{VAL_PREFIX}gripper_acc"] = sums["gripper_correct"] / sums["gripper_count"]
    if sums.get("token_count"):
        out[f"{VAL_PREFIX}token_acc"] = sums["token_correct"] / sums["token_count"]
    if sums.get("rows"):
        out[f"{VAL_PREFIX}loss"] = sums["loss_sum"] / sums["rows"]
        out[f"{VAL_PREFIX}frames"] = sums["rows"]
    return out


def validation_summary(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Best and last of every ``val/*`` curve (``val.<name>.best`` / ``.last``) and ``val.best_step``: the step of
    the best held-out action L1 (token accuracy for FAST, which has no L1; else the loss)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(VAL_PREFIX) and key != f"{VAL_PREFIX}frames":
                curves.setdefault(key[len(VAL_PREFIX) :], []).append((int(row["step"]), float(value)))
    out: dict[str, float] = {}
    best_steps: dict[str, int] = {}
    for name, points in curves.items():
        lower = name in LOWER_IS_BETTER
        step, best = min(points, key=lambda p: (p[1] if lower else -p[1], p[0]))
        out[f"val.{name}.best"] = best
        out[f"val.{name}.last"] = points[-1][1]
        best_steps[name] = step
    for name in ("action_l1", "token_acc", "loss"):
        if name in best_steps:
            out["val.best_step"] = best_steps[name]
            break
    return out
