"""Runs pretraining as the ``pretrain`` stage does (``run_pretrain`` under ``torchrun``), counting the dataset of
every sample it trains on.

Used by tests/test_mixture_pretrain.py: it wraps ``openvla.train.pretrain.make_vla_loader`` so that each rank writes
``$OPENVLA_SHARE_OUT/rank<r>.json`` = {dataset name: samples consumed by training so far}, then runs
``run_pretrain`` with the workspace's params.yaml and the stage's default paths; rank 0 writes the summary to
``metrics/pretrain.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import openvla.train.pretrain as pretrain_module

_make_vla_loader = pretrain_module.make_vla_loader


class _Counting:
    def __init__(self, loader, path: Path) -> None:
        self.loader, self.path = loader, path

    def __iter__(self):
        counts: dict[str, int] = {}
        for batch in self.loader:
            for name in batch["dataset_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                counts[name] = counts.get(name, 0) + 1
            self.path.write_text(json.dumps(counts))
            yield batch


def counting_loader(**kwargs):
    rank = int(os.environ.get("RANK", "0"))
    return _Counting(_make_vla_loader(**kwargs), Path(os.environ["OPENVLA_SHARE_OUT"]) / f"rank{rank}.json")


pretrain_module.make_vla_loader = counting_loader

if __name__ == "__main__":
    from openvla.config import load_params
    from openvla.io import atomic_write_json

    summary = pretrain_module.run_pretrain(
        load_params("params.yaml"),
        data_dir="data/rlds",
        statistics_path="data/stats/dataset_statistics.json",
        action_tokenizer_dir="data/tokenizer",
        run_dir="runs/pretrain",
        plots_dir="plots/pretrain",
        device="cpu",
    )
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json("metrics/pretrain.json", summary)
