"""Training metrics: action-token accuracy and L1 (DESIGN §7), and where they go (MLflow, plots, summary).

Metrics are accumulated as *sums* (correct tokens, action tokens, L1 sum, ...) so that micro-batches, ranks and
datasets combine exactly; ``summarize`` turns sums into rates. Rank 0 records one row per optimizer step to
``history.jsonl`` in the run directory (so curves survive a resume), to MLflow, and at the end to one CSV per
curve under ``plots/<stage>/`` for ``dvc plots show``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from openvla.io import atomic_write_json

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
TRAIN_CURVES = ("loss", "action_accuracy", "l1", "lr")  # per-step curves written under plots/<stage>/
RUN_SUMMARY_FILE = "summary.json"  # the summary of the run that trained, kept in the run directory


def action_token_sums(
    logits: torch.Tensor,
    labels: torch.Tensor,
    action_token_begin_idx: int,
    decode: Any | None = None,
    dataset_names: Iterable[str] | None = None,
    logits_to_keep: int = 0,
) -> dict[str, float]:
    """Sums for accuracy and L1 over the action tokens of a batch.

    ``logits`` (B, P + L, V) cover the multimodal sequence (P patch positions inserted after BOS), ``labels``
    (B, L) the text tokens. The prediction for text token i ≥ 1 is logits[:, P + i − 1], so predictions are
    ``logits[:, P:-1]`` against ``labels[:, 1:]``. With ``logits_to_keep`` = K (the model computed the last K
    positions only) they are ``logits[:, :-1]`` against ``labels[:, -(K-1):]``. Action tokens are labels >
    ``action_token_begin_idx``; ``decode(ids) -> values`` (the action tokenizer's) gives L1 in the normalized
    action space.
    """
    if logits_to_keep:
        if logits.shape[1] != logits_to_keep or logits_to_keep > labels.shape[1]:
            raise ValueError(f"logits length {logits.shape[1]} vs logits_to_keep {logits_to_keep} and "
                             f"labels length {labels.shape[1]}")  # fmt: skip
        preds = logits[:, :-1].argmax(dim=-1)  # (B, K-1)
        gt = labels[:, labels.shape[1] - logits_to_keep + 1 :]  # (B, K-1)
    else:
        num_patches = logits.shape[1] - labels.shape[1]
        if num_patches < 0:
            raise ValueError(f"logits length {logits.shape[1]} is shorter than labels length {labels.shape[1]}")
        preds = logits[:, num_patches:-1].argmax(dim=-1)  # (B, L-1)
        gt = labels[:, 1:]  # (B, L-1)
    mask = gt > action_token_begin_idx
    correct = (preds == gt) & mask
    names = list(dataset_names) if dataset_names is not None else None
    l1_rows = None
    if decode is not None and mask.any():
        pred_vals = torch.as_tensor(decode(preds[mask].cpu().numpy()), dtype=torch.float64)
        gt_vals = torch.as_tensor(decode(gt[mask].cpu().numpy()), dtype=torch.float64)
        l1_flat = (pred_vals - gt_vals).abs()
        rows = mask.nonzero()[:, 0].cpu()
        l1_rows = torch.zeros(mask.shape[0], dtype=torch.float64).index_add_(0, rows, l1_flat)
    sums: dict[str, float] = defaultdict(float)
    per_row_correct = correct.sum(dim=1).cpu()
    per_row_count = mask.sum(dim=1).cpu()
    for i in range(mask.shape[0]):
        prefixes = [""] + ([f"{names[i]}/"] if names is not None and len(set(names)) > 1 else [])
        for prefix in prefixes:
            sums[f"{prefix}correct"] += float(per_row_correct[i])
            sums[f"{prefix}count"] += float(per_row_count[i])
            if l1_rows is not None:
                sums[f"{prefix}l1_sum"] += float(l1_rows[i])
    return dict(sums)


def parallel_action_sums(
    output: Any,
    action_labels: torch.Tensor,
    actions: torch.Tensor,
    action_tokenizer: Any,
    dataset_names: Iterable[str] | None = None,
) -> dict[str, float]:
    """Sums for a parallel-decoding forward: token accuracy + L1 of decoded bins (tokens head, ``logits`` [B, K·D,
    V]) or L1 of the regressed chunk (L1 head, ``actions`` [B, K, D]); L1 in the normalized action space."""
    bsz = action_labels.shape[0]
    if output.logits is not None:
        preds = output.logits.argmax(dim=-1)
        correct = (preds == action_labels).sum(dim=1).double().cpu()
        dim = actions.shape[-1]  # decode per action dimension (a quantile tokenizer's bins differ per dimension)
        pred_vals = torch.as_tensor(action_tokenizer.decode(preds.cpu().numpy().reshape(bsz, -1, dim)))
        true_vals = torch.as_tensor(action_tokenizer.decode(action_labels.cpu().numpy().reshape(bsz, -1, dim)))
        pred_vals, true_vals = pred_vals.double().reshape(bsz, -1), true_vals.double().reshape(bsz, -1)
    else:
        correct = None
        pred_vals = output.actions.detach().double().cpu().reshape(bsz, -1)
        true_vals = actions.detach().double().cpu().reshape(bsz, -1)
    l1_rows = (pred_vals - true_vals).abs().reshape(bsz, -1).sum(dim=1)
    names = list(dataset_names) if dataset_names is not None else None
    sums: dict[str, float] = defaultdict(float)
    for i in range(bsz):
        prefixes = [""] + ([f"{names[i]}/"] if names is not None and len(set(names)) > 1 else [])
        for prefix in prefixes:
            sums[f"{prefix}count"] += float(action_labels.shape[1])
            sums[f"{prefix}l1_sum"] += float(l1_rows[i])
            if correct is not None:
                sums[f"{prefix}correct"] += float(correct[i])
    return dict(sums)


def summarize(sums: Mapping[str, float]) -> dict[str, float]:
    """Sums → rates: ``action_accuracy`` and ``l1`` (and ``<dataset>/…`` per dataset when mixed)."""
    out: dict[str, float] = {}
    prefixes = {k[: -len("count")] for k in sums if k.endswith("count")}
    for prefix in sorted(prefixes):
        count = sums.get(f"{prefix}count", 0.0)
        if count <= 0:
            continue
        if f"{prefix}correct" in sums:  # the L1 head has no tokens to be right about
            out[f"{prefix}action_accuracy"] = sums[f"{prefix}correct"] / count
        if f"{prefix}l1_sum" in sums:
            out[f"{prefix}l1"] = sums[f"{prefix}l1_sum"] / count
    return out


def merge_sums(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            total[key] += float(value)
    return dict(total)


class MetricsRecorder:
    """Rank 0's record of per-step metrics: MLflow, ``history.jsonl`` (resume-safe) and plot CSVs."""

    def __init__(self, run: Any | None, history_path: str | Path, plots_dir: str | Path | None) -> None:
        self.run = run
        self.history_path = Path(history_path)
        self.plots_dir = Path(plots_dir) if plots_dir else None
        self.rows: list[dict[str, float]] = []

    def resume_from(self, step: int) -> None:
        """Keep the rows of steps ≤ ``step`` (a resumed run repeats nothing after its checkpoint)."""
        self.rows = []
        if step > 0 and self.history_path.is_file():
            for line in self.history_path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row.get("step", math.inf) <= step:
                        self.rows.append(row)
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        self.history_path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def record(self, step: int, metrics: Mapping[str, float]) -> None:
        """One row of ``step``; MLflow gets the training keys as ``train/<key>`` and the held-out ones, which come
        as ``val/<key>`` already, unchanged."""
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        with self.history_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.run is not None:
            logged = {(k if k.startswith("val/") else f"train/{k}"): v for k, v in metrics.items()}
            self.run.log_metrics(logged, step=step)

    def write_plots(self, curves: Iterable[str] = TRAIN_CURVES) -> list[Path]:
        """One ``<curve>.csv`` (columns step, <curve>) per curve that was recorded, for DVC plots (x: step); the
        held-out curves ``val/<name>`` (``val/frames`` aside) come along as ``val_<name>.csv``.

        A curve this run never recorded (token accuracy of the L1 head) gets no file, and a stale one is removed:
        ``dvc.yaml`` declares the directory, so every CSV in it is drawn and an empty one would be an empty plot.
        """
        if self.plots_dir is None:
            return []
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        held_out = sorted({k for row in self.rows for k in row if k.startswith("val/") and k != "val/frames"})
        stale = [p.stem.replace("val_", "val/", 1) for p in self.plots_dir.glob("val_*.csv")]
        written = []
        for curve in dict.fromkeys([*curves, *held_out, *stale]):
            name = curve.replace("/", "_")
            path = self.plots_dir / f"{name}.csv"
            if not any(curve in row for row in self.rows):
                path.unlink(missing_ok=True)
                continue
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", name])
                for row in self.rows:
                    if curve in row:
                        writer.writerow([row["step"], f"{row[curve]:.6g}"])
            written.append(path)
        return written

    def tail_mean(self, key: str, n: int = 10) -> float | None:
        """Mean of the last ``n`` recorded values of ``key``."""
        values = [r[key] for r in self.rows if key in r][-n:]
        return sum(values) / len(values) if values else None


def keep_run_summary(run_dir: str | Path, summary: Mapping[str, Any], trained: bool) -> dict[str, Any]:
    """The stage's summary, kept across a rerun that finds its training already complete.

    ``dvc repro`` reruns ``pretrain`` / ``finetune`` when a dependency changed (say a refactor of ``openvla/train``);
    a run directory whose checkpoint already has every step then trains nothing, and its fresh summary would lack
    ``final_loss``, ``val.*`` and the timings, silently emptying ``metrics/<stage>.json``. So a run that trained
    (``trained``) writes its summary to ``<run_dir>/summary.json``; a run that did not starts from that file, with
    ``steps_this_run: 0`` and this run's own keys (``resumed_from_step``, ...) on top.
    """
    path = Path(run_dir) / RUN_SUMMARY_FILE
    if trained:
        atomic_write_json(path, dict(summary))
        return dict(summary)
    if not path.is_file():
        log.warning("training was already complete and %s is missing: the summary has no training metrics", path)
        return dict(summary)
    log.info("training was already complete: training metrics from %s", path)
    return {**json.loads(path.read_text()), **summary, "steps_this_run": 0}
