"""``openvla stats``: per-dataset action/proprio statistics (DESIGN §5), as OpenVLA's ``dataset_statistics.json``.

Writes ``data/stats/dataset_statistics.json`` (``{dataset_name: stats}``), ``metrics/stats.json`` (a summary) and
per-action-dimension histograms under ``plots/stats/`` for ``dvc plots show``. Statistics are cached by a hash of
the builder info, the state keys and the standardization transform's source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    data_dir: Annotated[Path, typer.Option(help="TFDS data directory holding <dataset_name>/<version>/.")] = Path(
        "data/rlds"
    ),
    out: Annotated[Path, typer.Option(help="Statistics JSON ({dataset_name: stats}, OpenVLA's shape).")] = Path(
        "data/stats/dataset_statistics.json"
    ),
    metrics: Annotated[
        Path, typer.Option(help="Summary metrics JSON (transitions, trajectories, action mean/std).")
    ] = (Path("metrics/stats.json")),
    plots_dir: Annotated[Path, typer.Option(help="Folder for per-action-dimension histogram CSVs (DVC plots).")] = Path(
        "plots/stats"
    ),
    cache_dir: Annotated[
        Path, typer.Option(help="Statistics cache (one JSON per dataset, keyed by a hash of builder info + transform).")
    ] = Path("data/stats/.cache"),
    params: Annotated[Path, typer.Option(help="params.yaml to read the `stats` section from.")] = Path("params.yaml"),
) -> None:
    """Compute dataset statistics for `stats.dataset_name` (a dataset or a mixture name) from params.yaml."""
    from openvla.data.statistics import write_statistics
    from stages.common import stage

    with stage("stats", params, metrics=metrics) as s:
        s.summary = write_statistics(
            data_dir, s.cfg.dataset_name, out=out, plots_dir=plots_dir, cache_dir=cache_dir, bins=s.cfg.histogram_bins
        )
        s.run.log_metrics(s.summary)
        s.run.log_artifact(out)
        s.run.log_artifacts(plots_dir, artifact_path="plots")
