"""The stage skeleton shared by every stage: the registry file loaded once, metrics written, options re-exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_command_args_rebuild_the_options_a_stage_was_called_with():
    from stages import pretrain
    from stages.common import command_args

    values = {
        "data_dir": Path("d"), "statistics": Path("s.json"), "tokenizer_dir": Path("t"), "run_dir": Path("r"),
        "metrics": Path("m.json"), "plots_dir": Path("p"), "device": "cpu", "params": Path("params.yaml"),
        "unrelated_local": 3,
    }  # fmt: skip
    args = command_args(pretrain.main, values)
    assert args == [
        "--data-dir", "d", "--statistics", "s.json", "--tokenizer-dir", "t", "--run-dir", "r",
        "--metrics", "m.json", "--plots-dir", "p", "--device", "cpu", "--params", "params.yaml",
    ]  # fmt: skip

    def command(flag: bool = False, name: str | None = None) -> None: ...

    assert command_args(command, {"flag": True, "name": None}) == ["--flag"]
    assert command_args(command, {"flag": False}) == ["--no-flag"]


def test_stage_loads_the_registry_file_once_and_writes_the_summary(tmp_path, monkeypatch):
    from stages.common import stage

    monkeypatch.setenv("OPENVLA_TRACKING", "off")
    counter = tmp_path / "count.txt"
    registry = tmp_path / "my_datasets.py"
    registry.write_text(
        f"from pathlib import Path\np = Path({str(counter)!r})\n"
        "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')\n"
    )
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  registry_file: {registry}\nstats:\n  histogram_bins: 7\n")
    metrics = tmp_path / "metrics" / "stats.json"
    for _ in range(2):
        with stage("stats", params, metrics=metrics) as s:
            assert s.cfg.histogram_bins == 7 and s.params.data.registry_file == str(registry)
            s.summary = {"value": 1.5}
    assert counter.read_text() == "1"  # run once per process, whatever asks for it again
    assert json.loads(metrics.read_text()) == {"value": 1.5}


def test_a_registry_file_that_fails_names_the_file_and_the_key(tmp_path):
    from openvla.data import DataError
    from openvla.data.registry import load_registry_file

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('typo in my registration')\n")
    with pytest.raises(DataError, match=r"broken\.py: the registry file \(params data\.registry_file\) failed"):
        load_registry_file(broken)
