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
    from openvla.hf.export import export_hf
    from stages.common import stage

    def extra(p):
        return {"model.tokenizer": p.model.tokenizer, "source": str(source)}

    with stage("export", params, metrics=metrics, extra_params=extra) as s:
        s.summary = export_hf(
            source,
            models_dir / f"{s.cfg.name}-hf",
            max_shard_size=s.cfg.max_shard_size,
            dtype=s.cfg.dtype,
            tokenizer=s.params.model.tokenizer,
            statistics=statistics,
            run=s.run,
            max_artifact_mb=s.cfg.max_artifact_mb,
        )
        s.run.log_metrics(s.summary)
