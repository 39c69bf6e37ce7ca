"""``openvla eval-libero``: closed-loop LIBERO evaluation of an exported model (or of the random baseline).

Episodes follow OpenVLA's protocol (DESIGN §11) on the fixed initial states
``[eval_libero.first_init_state, + episodes_per_task)``. Writes ``metrics/libero.json`` (per-task and total success
with 95% Wilson intervals, episode lengths), ``plots/libero/`` (CSV tables, MP4 videos) and logs all to MLflow.
``--policy random`` evaluates uniform random actions (the floor a trained policy must beat) and needs no model;
``--blind`` gives every episode the empty instruction (what a policy that ignores language scores).
``--server http://host:port`` evaluates a running ``openvla serve`` instead: every query goes over HTTP with the raw
observation, as a robot's would, and gives the in-process run's actions (the simulator and the model then need not
share a machine or a Python environment).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer


def main(
    model_dir: Annotated[Path, typer.Option(help="Hugging Face model directory (`openvla export` output).")] = Path(
        "models/openvla-embedded-hf"
    ),
    policy: Annotated[str, typer.Option(help="`model` (the model in --model-dir) or `random` (baseline).")] = "model",
    server: Annotated[
        str, typer.Option(help="URL of an `openvla serve` to evaluate over HTTP instead of --model-dir.")
    ] = "",
    suite: Annotated[
        list[str] | None, typer.Option(help="Evaluate this suite instead of eval_libero.suites (repeatable).")
    ] = None,
    unnorm_key: Annotated[str | None, typer.Option(help="Instead of eval_libero.unnorm_key.")] = None,
    blind: Annotated[
        bool, typer.Option(help="Empty instruction in every episode (eval_libero.blind): the language-blind baseline.")
    ] = False,
    episodes_per_task: Annotated[
        int, typer.Option(help="Instead of eval_libero.episodes_per_task (the first N of its initial states).")
    ] = 0,
    videos: Annotated[int | None, typer.Option(help="Instead of eval_libero.videos (0 = none).")] = None,
    stats: Annotated[
        Path, typer.Option(help="Random policy only: dataset_statistics.json giving its action range (if it exists).")
    ] = Path("data/stats/dataset_statistics.json"),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON.")] = Path("metrics/libero.json"),
    plots_dir: Annotated[Path, typer.Option(help="Folder of CSV tables and MP4 videos.")] = Path("plots/libero"),
    params: Annotated[Path, typer.Option(help="params.yaml to read the `eval_libero` section from.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Evaluate a policy in LIBERO (section `eval_libero` of params.yaml)."""
    from openvla.eval.libero import evaluate_libero, policy_spec
    from stages.common import stage

    if policy not in ("model", "random"):
        raise typer.BadParameter(f"--policy must be 'model' or 'random', got {policy!r}")
    kind = "server" if server else policy

    overrides = {
        k: v
        for k, v in (
            ("suites", suite),
            ("unnorm_key", unnorm_key),
            ("blind", blind),
            ("episodes_per_task", episodes_per_task),
        )
        if v
    }
    if videos is not None:
        overrides["videos"] = videos

    def extra(_):
        return {"policy": kind, "model_dir": str(model_dir), "server": server,
                **{f"override.{k}": v for k, v in overrides.items()}}  # fmt: skip

    with stage("eval-libero", params, metrics=metrics, extra_params=extra) as s:
        cfg = dataclasses.replace(s.cfg, **overrides)
        spec = policy_spec(
            cfg,
            kind=kind,
            model_dir=str(model_dir),
            server_url=server,
            stats_path=str(stats) if kind == "random" and stats.is_file() else "",
        )
        s.summary = evaluate_libero(cfg, spec, plots_dir=plots_dir, run=s.run)
