"""``openvla pretrain``: train the VLA on the RLDS mixture with FSDP (or DDP), resumable (DESIGN §7).

``dvc.yaml`` runs it under ``torchrun --standalone --nproc-per-node ${pretrain.nproc} -m stages.pretrain``; called
as ``openvla pretrain`` with ``pretrain.nproc > 1`` it re-executes itself that way. Writes ``runs/pretrain/``
(``checkpoints/step-XXXXXX/`` HF directories + trainer state, ``latest``, ``config.json``,
``dataset_statistics.json``), ``metrics/pretrain.json`` and per-step curves under ``plots/pretrain/``; rank 0 logs
every step to MLflow. With ``pretrain.resume: auto`` a killed run continues from ``runs/pretrain/latest``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    data_dir: Annotated[
        Path, typer.Option(help="TFDS data directory holding the RLDS datasets of data.mixture.")
    ] = Path("data/rlds"),
    statistics: Annotated[Path, typer.Option(help="Statistics JSON written by the `stats` stage.")] = Path(
        "data/stats/dataset_statistics.json"
    ),
    tokenizer_dir: Annotated[Path, typer.Option(help="Action tokenizer directory written by the `bins` stage.")] = Path(
        "data/tokenizer"
    ),
    run_dir: Annotated[Path, typer.Option(help="Run directory: checkpoints, `latest` pointer, config, stats.")] = Path(
        "runs/pretrain"
    ),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON (dvc metrics).")] = Path("metrics/pretrain.json"),
    plots_dir: Annotated[Path, typer.Option(help="Folder for per-step curve CSVs (dvc plots).")] = Path(
        "plots/pretrain"
    ),
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    params: Annotated[Path, typer.Option(help="params.yaml to read `pretrain`, `model`, `data` from.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Pretrain the VLA of `model.name` on `data.mixture` with `pretrain.nproc` processes (torchrun)."""
    from openvla.config import load_params
    from openvla.logging_utils import setup_logging
    from openvla.train.launch import env_rank, relaunch_under_torchrun
    from stages.common import command_args, stage

    setup_logging()
    nproc = load_params(params).pretrain.nproc
    code = relaunch_under_torchrun(nproc, "stages.pretrain", command_args(main, locals()))
    if code is not None:  # this process started torchrun, which ran the stage
        if code:
            raise typer.Exit(code)
        return

    from openvla.train.pretrain import run_pretrain

    def extra(p):
        return {
            **{f"model.{k}": v for k, v in vars(p.model).items()},
            **{f"data.{k}": v for k, v in vars(p.data).items()},
        }

    with stage("pretrain", params, metrics=metrics, extra_params=extra, enabled=env_rank() == 0) as s:
        s.summary = run_pretrain(
            s.params,
            data_dir=data_dir,
            statistics_path=statistics,
            action_tokenizer_dir=tokenizer_dir,
            run_dir=run_dir,
            plots_dir=plots_dir,
            run=s.run,
            device=device,
        )


if __name__ == "__main__":  # `torchrun … -m stages.pretrain`
    typer.run(main)
