"""``openvla finetune``: LoRA fine-tuning of the pretrained VLA, merged into a plain model at the end (DESIGN §8).

Reads the base model (``finetune.base``: ``pretrain`` = the checkpoint ``runs/pretrain/latest`` names, or a path to
an HF directory), the RLDS mixture (``finetune.mixture`` or ``data.mixture``) and its statistics; writes
``runs/finetune/`` (``adapter/``, ``merged/`` — a complete HF directory with ``norm_stats`` filled — resumable
``checkpoints/`` + ``latest``, ``dataset_statistics.json``), ``metrics/finetune.json`` and ``plots/finetune/``.
One process by default; under ``torchrun`` it trains with DDP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    data_dir: Annotated[Path, typer.Option(help="TFDS data directory holding the fine-tuning RLDS datasets.")] = Path(
        "data/rlds"
    ),
    statistics: Annotated[Path, typer.Option(help="Statistics JSON written by the `stats` stage.")] = Path(
        "data/stats/dataset_statistics.json"
    ),
    tokenizer_dir: Annotated[
        Path, typer.Option(help="Action tokenizer of the `bins` stage (used when the base carries none).")
    ] = Path("data/tokenizer"),
    pretrain_dir: Annotated[Path, typer.Option(help="Pretrain run directory (for finetune.base: pretrain).")] = Path(
        "runs/pretrain"
    ),
    run_dir: Annotated[Path, typer.Option(help="Run directory: adapter/, merged/, checkpoints, `latest`.")] = Path(
        "runs/finetune"
    ),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON (dvc metrics).")] = Path("metrics/finetune.json"),
    plots_dir: Annotated[Path, typer.Option(help="Folder for per-step curve CSVs (dvc plots).")] = Path(
        "plots/finetune"
    ),
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    params: Annotated[Path, typer.Option(help="params.yaml to read `finetune`, `model`, `data` from.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Fine-tune LoRA adapters (`finetune.*`) on the pretrained VLA and write the merged model."""
    from openvla.train.finetune import resolve_base, run_finetune
    from openvla.train.launch import env_rank
    from stages.common import stage

    def extra(p):
        return {
            "finetune.base_dir": str(resolve_base(p.finetune.base, pretrain_dir)),
            "finetune.lora_alpha_effective": p.finetune.alpha,
            **{f"data.{k}": v for k, v in vars(p.data).items()},
        }

    with stage("finetune", params, metrics=metrics, extra_params=extra, enabled=env_rank() == 0) as s:
        s.summary = run_finetune(
            s.params,
            base_dir=resolve_base(s.cfg.base, pretrain_dir),
            data_dir=data_dir,
            statistics_path=statistics,
            action_tokenizer_dir=tokenizer_dir,
            run_dir=run_dir,
            plots_dir=plots_dir,
            run=s.run,
            device=device,
        )


if __name__ == "__main__":  # `torchrun … -m stages.finetune` (DDP)
    typer.run(main)
