"""``openvla demos``: scripted-expert demonstrations in LIBERO, written as LIBERO-style HDF5 (embedded default).

Writes ``<out-dir>/<task_name>_demo.hdf5`` per task of ``demos.task_ids`` atomically (the folder appears complete or
not at all) and ``metrics/demos.json`` (expert success rate, attempts, demos per minute). Initial states are fresh
samples of each task's placement sampler, never LIBERO's fixed ones that ``eval-libero`` uses (DESIGN §9).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    out_dir: Annotated[Path, typer.Option(help="Output folder of the HDF5 files (replaced atomically).")] = Path(
        "data/raw/libero_embedded"
    ),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON.")] = Path("metrics/demos.json"),
    params: Annotated[Path, typer.Option(help="params.yaml to read the `demos` section from.")] = Path("params.yaml"),
) -> None:
    """Record scripted-expert demos in LIBERO (section `demos` of params.yaml)."""
    from openvla.sim.demos import make_demos
    from stages.common import stage

    with stage("demos", params, metrics=metrics) as s:
        s.summary = make_demos(s.cfg, out_dir, run=s.run)
        s.run.log_metrics({k: v for k, v in s.summary.items() if not isinstance(v, dict)})
