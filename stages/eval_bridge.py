"""``openvla eval-bridge``: Bridge / WidowX evaluation of an exported model (DESIGN §11).

``eval_bridge.mode=offline`` (default): the held-out episodes of ``eval_bridge.dataset_name`` under ``--data-dir``
(the embedded default: ``libero_embedded``'s val split or last 5% of train; BridgeData: ``dataset_name=bridge_orig``,
``unnorm_key=bridge_orig`` and ``--data-dir`` pointing at the TFDS folder holding ``bridge_dataset/``) are predicted
frame by frame; action L1 (dataset units and normalized), gripper accuracy and action-token accuracy go to
``metrics/bridge.json`` and MLflow, predicted vs true trajectories of the first episodes to ``plots/bridge/``.

``eval_bridge.mode=live``: one episode of ``eval_bridge.steps`` steps at ``eval_bridge.control_hz`` on the WidowX
reached at ``eval_bridge.host``:``eval_bridge.port`` (needs the ``widowx_envs`` client package), for
``eval_bridge.instruction``; timing metrics and the actions sent are recorded the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    model_dir: Annotated[Path, typer.Option(help="Exported HF model directory (`openvla export`).")] = Path(
        "models/openvla-embedded-hf"
    ),
    data_dir: Annotated[Path, typer.Option(help="TFDS data directory with the held-out episodes (offline).")] = Path(
        "data/rlds"
    ),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON (dvc metrics).")] = Path("metrics/bridge.json"),
    plots_dir: Annotated[Path, typer.Option(help="Folder for trajectory / per-dim / per-episode CSVs.")] = Path(
        "plots/bridge"
    ),
    params: Annotated[
        Path, typer.Option(help="params.yaml to read `eval_bridge`, `model.tokenizer`, `data.registry_file`.")
    ] = Path("params.yaml"),
) -> None:
    """Evaluate a model offline on held-out Bridge-format episodes, or live on a WidowX."""
    from openvla.eval.bridge import evaluate_bridge
    from stages.common import stage

    def extra(p):
        return {"model_dir": str(model_dir), "data_dir": str(data_dir), "model.tokenizer": p.model.tokenizer}

    with stage("eval-bridge", params, metrics=metrics, extra_params=extra) as s:
        s.summary = evaluate_bridge(
            s.cfg,
            model_dir=model_dir,
            data_dir=data_dir,
            plots_dir=plots_dir,
            tokenizer=s.params.model.tokenizer,
            run=s.run,
        )
