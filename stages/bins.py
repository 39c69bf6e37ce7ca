"""``openvla bins``: fit the action tokenizer and report what discretizing actions costs (DESIGN §4).

Reads the training split of ``data.mixture`` (RLDS under ``--data-dir``) and its statistics, normalizes the actions
as training does, fits ``bins.scheme`` (``uniform`` = OpenVLA's bins; ``quantile`` = per-dimension quantile bins),
and writes the tokenizer to ``data/tokenizer/`` (``openvla.actions.load_action_tokenizer`` restores it), the
reconstruction errors to ``metrics/bins.json`` and bin-usage / error / edge tables to ``plots/bins/``. The action
ids are the last ``bins.n_bins`` ids of the text tokenizer named by ``model.tokenizer``.

Compare schemes with ``dvc exp run -S bins.scheme=quantile`` and ``dvc exp show`` (same metric keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    data_dir: Annotated[Path, typer.Option(help="TFDS data directory holding <dataset_name>/<version>/.")] = Path(
        "data/rlds"
    ),
    statistics: Annotated[Path, typer.Option(help="Statistics JSON written by the `stats` stage.")] = Path(
        "data/stats/dataset_statistics.json"
    ),
    out_dir: Annotated[Path, typer.Option(help="Directory the fitted action tokenizer is written to.")] = Path(
        "data/tokenizer"
    ),
    metrics: Annotated[Path, typer.Option(help="Reconstruction-error metrics JSON (dvc metrics).")] = Path(
        "metrics/bins.json"
    ),
    plots_dir: Annotated[Path, typer.Option(help="Folder for bin-usage, error and edge CSVs (dvc plots).")] = Path(
        "plots/bins"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml to read `bins`, `data.mixture`, `model.tokenizer`.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Fit the action tokenizer of `bins.scheme` on `data.mixture` and measure its reconstruction error."""
    from openvla.actions.fit import fit_bins
    from openvla.model.text_tokenizer import load_text_tokenizer
    from stages.common import stage

    def extra(p):
        return {"data.mixture": p.data.mixture, "data.chunk": p.data.chunk, "model.tokenizer": p.model.tokenizer}

    with stage("bins", params, metrics=metrics, extra_params=extra) as s:
        vocab_size = load_text_tokenizer(s.params.model.tokenizer).vocab_size  # unpadded: action ids are its last
        s.summary = fit_bins(
            s.cfg,
            data_dir=data_dir,
            statistics_path=statistics,
            mixture=s.params.data.mixture,
            vocab_size=vocab_size,
            out_dir=out_dir,
            plots_dir=plots_dir,
            run=s.run,
            chunk=s.params.data.chunk,  # FAST encodes chunks of the K the model is trained with
        )
