"""``openvla export``: a trained checkpoint → ``models/<export.name>-hf/``, a Hugging Face directory in the
official OpenVLA layout (DESIGN §10), loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor`` after
``import openvla``.

Reads ``runs/finetune/merged`` by default (any HF model directory, or a run directory with a ``latest`` pointer
such as ``runs/pretrain``), writes the export atomically, logs it to MLflow and writes ``metrics/export.json``
(size, parameters, shards).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    source: Annotated[
        Path, typer.Option(help="HF model directory (runs/finetune/merged) or a run dir with `latest` (runs/pretrain).")
    ] = Path("runs/finetune/merged"),
    models_dir: Annotated[
        Path, typer.Option(help="Parent folder of the export: <models-dir>/<export.name>-hf/.")
    ] = Path("models"),
    statistics: Annotated[
        Path | None, typer.Option(help="Statistics JSON for norm_stats (default: the checkpoint's own).")
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Export summary metrics JSON (dvc metrics).")] = Path(
        "metrics/export.json"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml to read `export` and `model.tokenizer`.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Export a checkpoint as a Hugging Face directory in the official OpenVLA layout."""
    from openvla.config import load_params
    from openvla.hf.export import export_hf
    from openvla.logging_utils import setup_logging
    from openvla.tracking import stage_run, write_metrics

    setup_logging()
    all_params = load_params(params)
    cfg = all_params.export
    out_dir = models_dir / f"{cfg.name}-hf"
    extra = {"model.tokenizer": all_params.model.tokenizer, "source": str(source)}
    with stage_run("export", cfg, experiment=all_params.project.name, extra_params=extra) as run:
        summary = export_hf(
            source,
            out_dir,
            max_shard_size=cfg.max_shard_size,
            dtype=cfg.dtype,
            tokenizer=all_params.model.tokenizer,
            statistics=statistics,
            run=run,
            max_artifact_mb=cfg.max_artifact_mb,
        )
        run.log_metrics(summary)
    write_metrics(metrics, summary)
