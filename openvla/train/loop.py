"""The training loop shared by pretraining and LoRA fine-tuning, independent of the model.

``fit`` runs optimizer steps ``start_step … steps-1`` on this rank's micro-batches: gradient accumulation (the
gradient sync only on the last micro-step), global grad-norm clipping, AdamW + schedule, per-step metrics reduced
over ranks (rank 0 records them), checkpoints every ``save_every`` steps and at the end through a
``Checkpointer``. What a batch is and how the loss is computed is the ``objective``'s business:
``objective(model, batch) -> (mean loss tensor, metric sums)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from openvla.train import checkpoint as ckpt
from openvla.train.distributed import DistInfo, all_gather_objects, barrier, broadcast_object
from openvla.train.metrics import MetricsRecorder, merge_sums, summarize
from openvla.train.strategy import (
    clip_grad_norm,
    full_model_state_dict,
    full_optimizer_state_dict,
    load_full_optimizer_state_dict,
    set_gradient_sync,
)
from openvla.train.validation import validation_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    steps: int  # optimizer steps in total (a resumed run continues up to this)
    grad_accumulation: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # max global grad norm; ≤ 0 disables clipping (the norm is still logged)
    save_every: int = 0  # checkpoint every N steps (0: only at the end); the last step is always saved
    log_every: int = 1  # record metrics every N steps (and at the last)
    eval_every: int = 0  # run ``fit``'s ``validate`` every N steps and at the last (0: never)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {self.steps}")
        if self.grad_accumulation < 1:
            raise ValueError(f"grad_accumulation must be ≥ 1, got {self.grad_accumulation}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be ≥ 0, got {self.eval_every}")

    @classmethod
    def of_stage(cls, stage_cfg: Any) -> LoopConfig:
        """The loop of a training stage's section (``pretrain`` or ``finetune`` in params.yaml)."""
        return cls(stage_cfg.steps, stage_cfg.grad_accumulation, stage_cfg.grad_clip, stage_cfg.save_every,
                   stage_cfg.log_every, stage_cfg.eval_every)  # fmt: skip


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss of the micro-batch (differentiable) and metric sums (see ``openvla.train.metrics``)."""
        ...


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of what makes a checkpoint resumable by this run (config values as JSON)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpointer:
    """Saves and restores the full training state; ``save`` and ``restore`` are collective (every rank calls)."""

    def __init__(
        self,
        manager: ckpt.CheckpointManager,
        info: DistInfo,
        write_model: Callable[[Path, dict[str, torch.Tensor]], None],
        run_fingerprint: str,
        model_state: Callable[[nn.Module], dict[str, torch.Tensor]] = full_model_state_dict,
        code_fingerprint: str | None = None,
    ) -> None:
        """``model_state(model)`` collects what ``write_model`` writes (default: the gathered full state dict;
        LoRA passes the adapter weights only). ``code_fingerprint`` identifies the training code (see
        ``find_resume``); it is recorded in every checkpoint."""
        self.manager = manager
        self.info = info
        self.write_model = write_model
        self.run_fingerprint = run_fingerprint
        self.model_state = model_state
        self.code_fingerprint = code_fingerprint
        self.extra_meta: dict[str, Any] = {}  # also written to checkpoint.json (e.g. the MLflow run id)
        if code_fingerprint is not None:
            self.extra_meta["code"] = code_fingerprint

    def find_resume(self, resume: bool, total_steps: int | None = None) -> Path | None:
        """The checkpoint to resume from (decided on rank 0, broadcast), clearing one of another config.

        The training code is not part of the configuration: a killed run resumes after a code fix (a logging bug must
        not cost days of a 7B run), with a warning. A run that *finished* (its step ≥ ``total_steps``) with other
        training code starts over: DVC reruns the stage because that code changed, and resuming would only write
        the old model again. A checkpoint without a code record (written before the record existed) counts as other
        code."""
        choice = None
        if self.info.is_main:
            self.manager.remove_stale_temporaries()
            try:
                latest = self.manager.latest() if resume else None
            except ckpt.CheckpointError as err:  # e.g. a checkpoint deleted by hand under `latest`
                log.warning("not resuming: %s; starting over", err)
                latest = None
            if latest is not None and ckpt.checkpoint_fingerprint(latest) != self.run_fingerprint:
                log.warning("not resuming from %s: it was trained with another configuration; starting over",
                            latest)  # fmt: skip
                latest = None
            if latest is not None and self.code_fingerprint is not None:
                meta = ckpt.read_meta(latest)
                if meta.get("code") != self.code_fingerprint:
                    step = int(meta.get("step", 0))
                    if total_steps is not None and step >= total_steps:
                        log.warning("not resuming from %s: that run finished with other training code (openvla/"
                                    "data, model or train changed since); starting over", latest)  # fmt: skip
                        latest = None
                    else:
                        log.warning("resuming from %s at step %d although the training code changed since (set "
                                    "resume: never to start over)", latest, step)  # fmt: skip
            if latest is None and (self.manager.pointer.exists() or self.manager.root.exists()):
                self.manager.clear()
            choice = str(latest) if latest else None
        choice = broadcast_object(choice)
        return Path(choice) if choice else None

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        data_state: Mapping[str, Any],
    ) -> None:
        model_state = self.model_state(model)
        optim_state = full_optimizer_state_dict(model, optimizer)
        rngs = all_gather_objects(ckpt.capture_rng())
        if self.info.is_main:
            state = {
                "step": step,
                "optimizer": optim_state,
                "scheduler": scheduler.state_dict(),
                "rng": rngs,
                "data": dict(data_state),
                "world_size": self.info.world_size,
                "fingerprint": self.run_fingerprint,
            }

            meta = {"step": step, "fingerprint": self.run_fingerprint, "world_size": self.info.world_size,
                    "data": dict(data_state), **self.extra_meta}  # fmt: skip

            def write(directory: Path) -> None:
                self.write_model(directory, model_state)
                (directory / ckpt.CHECKPOINT_META).write_text(json.dumps(meta, indent=2) + "\n")
                torch.save(state, directory / ckpt.TRAINER_STATE)

            self.manager.save(step, write)
        barrier()

    def restore(
        self, checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> dict[str, Any]:
        """Load optimizer, scheduler and this rank's RNG (model weights are loaded by the caller before wrapping)."""
        state = ckpt.load_trainer_state(checkpoint)
        load_full_optimizer_state_dict(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rngs = state.get("rng") or []
        if self.info.rank < len(rngs):
            ckpt.restore_rng(rngs[self.info.rank])
        log.info("resumed from %s at step %d", checkpoint, state["step"])
        return {"step": int(state["step"]), "data": state.get("data", {})}

    def continue_tracking(self, run: Any | None, checkpoint: Path | None) -> None:
        """Rank 0: make ``run`` (a ``StageRun``) continue the MLflow run that wrote ``checkpoint`` (one curve across
        resumes), and record the run id in the checkpoints written from now on."""
        if run is None or not self.info.is_main or not getattr(run, "active", False):
            return
        if checkpoint is not None:
            meta = ckpt.read_meta(checkpoint)
            run.continue_run(meta.get("mlflow_run_id"), step=int(meta.get("step", 0)))
        if run.run_id:
            self.extra_meta["mlflow_run_id"] = run.run_id


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches: Iterable[Any],
    objective: Objective,
    config: LoopConfig,
    info: DistInfo,
    *,
    start_step: int = 0,
    data_state: Mapping[str, Any] | None = None,
    checkpointer: Checkpointer | None = None,
    recorder: MetricsRecorder | None = None,
    batch_size_of: Callable[[Any], int] = len,
    on_step_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    desc: str = "train",
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
) -> dict[str, float]:
    """Train from ``start_step`` to ``config.steps``; returns the summary (rank 0's view; all ranks agree).

    ``on_step_end(step, metrics)`` runs after every optimizer step (and its checkpoint); returning True stops
    training there (the callback must answer the same on every rank).

    ``validate(model) -> {"val/…": value}`` runs every ``config.eval_every`` steps and after the last step, on every
    rank (it is collective: FSDP's forward needs all ranks), before that step's checkpoint, so a run resumed from a
    checkpoint has the validation of its step already; rank 0 records the values in that step's row and
    the summary gets their best and last (``openvla.train.validation.validation_summary``).

    ``data_state`` is the restored checkpoint's (``Checkpointer.restore``): every checkpoint records how many frames
    each rank has consumed (``frames_per_rank``) and in total (``samples_seen``), counted across resumes, so the
    loader of a resumed run can start where the stream stopped (``openvla.train.data.resume_skip``).
    """
    model.train()
    restored = dict(data_state or {})
    frames_per_rank = [int(n) for n in restored.get("frames_per_rank") or []]
    if len(frames_per_rank) != info.world_size:
        frames_per_rank = [0] * info.world_size
    total_seen = int(restored.get("samples_seen", 0))
    iterator = iter(batches)
    progress = tqdm(total=config.steps, initial=start_step, desc=desc, disable=not info.is_main, dynamic_ncols=True)
    samples_seen = 0
    t_start = time.perf_counter()
    last: dict[str, float] = {}
    done = start_step
    val_time = 0.0
    for step in range(start_step, config.steps):
        t0 = time.perf_counter()
        data_time = 0.0
        loss_sum = 0.0
        sums: dict[str, float] = {}
        samples = 0
        for micro in range(config.grad_accumulation):
            td = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                raise RuntimeError(f"the data ran out at step {step} (micro-batch {micro}); the training "
                                   "iterator must repeat") from None  # fmt: skip
            data_time += time.perf_counter() - td
            set_gradient_sync(model, micro == config.grad_accumulation - 1)
            loss, part = objective(model, batch)
            (loss / config.grad_accumulation).backward()
            loss_sum += float(loss.detach())
            sums = merge_sums([sums, part])
            samples += batch_size_of(batch)
        grad_norm = float(clip_grad_norm(model, config.grad_clip))
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        parts = all_gather_objects((loss_sum / config.grad_accumulation, sums, samples, data_time))
        step_time = time.perf_counter() - t0
        global_samples = sum(p[2] for p in parts)
        samples_seen += global_samples
        total_seen += global_samples
        frames_per_rank = [n + p[2] for n, p in zip(frames_per_rank, parts, strict=True)]
        done = step + 1
        last = {
            "loss": sum(p[0] for p in parts) / len(parts),
            **summarize(merge_sums(p[1] for p in parts)),
            "lr": lr,
            "grad_norm": grad_norm,
            "step_time": step_time,
            "data_time": max(p[3] for p in parts),
            "samples_per_s": global_samples / step_time if step_time > 0 else 0.0,
        }
        val: dict[str, float] = {}
        if validate is not None and config.eval_every > 0 and (done % config.eval_every == 0 or done == config.steps):
            tv = time.perf_counter()
            val = dict(validate(model))
            val_time += time.perf_counter() - tv
            log.info("step %d held-out: %s", done, ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
        if info.is_main:
            if recorder is not None and (done % config.log_every == 0 or done == config.steps or val):
                recorder.record(done, {**last, **val})  # one row per step: the val/* keys join that step's
            shown = {"loss": f"{last['loss']:.3f}"}
            if "action_accuracy" in last:  # token heads; the L1 head's loss is its L1 already
                shown["acc"] = f"{last['action_accuracy']:.2f}"
            progress.set_postfix(**shown)
            progress.update(1)
        data_state = {"step": done, "samples_seen": total_seen, "frames_per_rank": list(frames_per_rank)}
        saved = checkpointer is not None and (
            done == config.steps or (config.save_every > 0 and done % config.save_every == 0)
        )
        if saved:
            checkpointer.save(done, model, optimizer, scheduler, data_state)
        if on_step_end is not None and on_step_end(done, last):
            log.info("stopping at step %d: asked by the step callback", done)
            if checkpointer is not None and not saved:
                checkpointer.save(done, model, optimizer, scheduler, data_state)
            break
    progress.close()
    wall = time.perf_counter() - t_start
    steps_run = done - start_step
    rss = all_gather_objects(peak_rss_mb())
    summary = {f"final_{k}": v for k, v in last.items() if "/" not in k and k not in ("step_time", "data_time")}
    summary.update(
        {
            "steps": done,
            "steps_this_run": steps_run,
            "wall_time_s": wall,
            "samples_per_s": samples_seen / wall if wall > 0 else 0.0,
            "peak_rss_mb": rss[0],  # rank 0
            "peak_rss_mb_all_ranks": sum(rss),  # what the job needs on one node
        }
    )
    if validate is not None and config.eval_every > 0:
        summary["val_time_s"] = val_time  # held-out evaluation's share of wall_time_s (this run)
    if recorder is not None:
        for key in ("loss", "action_accuracy", "l1"):
            mean = recorder.tail_mean(key)
            if mean is not None:
                summary[f"last10_{key}"] = mean
        summary.update(validation_summary(recorder.rows))
    return summary
