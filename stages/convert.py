"""``openvla convert``: raw robot episodes (LIBERO-style HDF5, plain ``.npz`` or a LeRobot v3.0 dataset) → RLDS.

Writes ``<data-dir>/<convert.dataset_name>/<convert.version>/`` atomically (nothing is left behind on a bad input)
and ``metrics/convert.json`` (episodes kept/dropped, steps kept, no-ops dropped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    raw_dir: Annotated[
        Path,
        typer.Option(
            help="Folder of raw episodes: `*_demo.hdf5` files (libero_hdf5), `episode_*.npz` (npz), or a LeRobot "
            "v3.0 dataset directory with meta/info.json (lerobot)."
        ),
    ] = Path("data/raw/libero_embedded"),
    data_dir: Annotated[
        Path, typer.Option(help="TFDS data directory; the dataset goes to <data-dir>/<dataset_name>/<version>/.")
    ] = Path("data/rlds"),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON (episodes/steps kept and dropped).")] = Path(
        "metrics/convert.json"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml to read the `convert` section from.")] = Path("params.yaml"),
) -> None:
    """Convert raw episodes to RLDS with a tensorflow-datasets builder (section `convert` of params.yaml)."""
    from openvla.data.convert import convert_dataset
    from stages.common import stage

    with stage("convert", params, metrics=metrics) as s:
        s.summary = convert_dataset(raw_dir, data_dir, s.cfg)
        s.run.log_metrics(s.summary)
