"""The README's "Add your own robot dataset" steps, run as written (code blocks read from README.md), and the
``convert`` / ``stats`` stage commands: options documented in ``--help``, outputs, metrics, plots, MLflow."""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT
from data_fixtures import demo_actions, write_libero_hdf5, write_npz_episodes
from typer.testing import CliRunner

from stages import convert as convert_stage
from stages import stats as stats_stage
from stages.cli import app

RUNNER = CliRunner()


def _readme_block(language: str, starts_with: str) -> str:
    """The README code block of ``language`` whose text starts with ``starts_with``."""
    text = (REPO_ROOT / "README.md").read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S):
        if block.startswith(starts_with):
            return block
    raise AssertionError(f"README.md has no ```{language} block starting with {starts_with!r}")


def _invoke(args: list[str]) -> None:
    result = RUNNER.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("stage", [convert_stage, stats_stage])
def test_stage_help_describes_every_option(stage, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    name = stage.__name__.split(".")[-1]
    result = RUNNER.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    hints = typing.get_type_hints(stage.main, include_extras=True)
    for parameter in inspect.signature(stage.main).parameters.values():
        option = "--" + parameter.name.replace("_", "-")
        assert option in result.output, f"{option} missing from `openvla {name} --help`"
        help_text = hints[parameter.name].__metadata__[0].help
        assert help_text and help_text.split()[0] in result.output


def test_add_your_own_robot_dataset_as_the_readme_says(tmp_path, monkeypatch, isolated_mlflow):
    monkeypatch.chdir(tmp_path)
    # The mixture of the README also uses libero_embedded: convert a tiny one first (the pipeline's default format).
    write_libero_hdf5(
        Path("data/raw/libero_embedded/pick_demo.hdf5"), "pick it", [{"actions": demo_actions(8, s)} for s in range(3)]
    )
    Path("params.yaml").write_text("stats:\n  dataset_name: libero_embedded\n")
    _invoke(["convert", "--raw-dir", "data/raw/libero_embedded", "--data-dir", "data/rlds", "--metrics", "m.json"])

    # Step 1: one .npz per episode.
    write_npz_episodes(Path("data/raw/my_robot"), num_episodes=10, length=12, size=32)
    # Step 2: the README's convert params, then its command.
    params = yaml.safe_load(_readme_block("yaml", "convert:\n  input_format: npz"))
    Path("params_my_robot.yaml").write_text(yaml.safe_dump(params))
    command = _readme_block("bash", "openvla convert --raw-dir data/raw/my_robot").split()[1:]
    _invoke([*command, "--params", "params_my_robot.yaml"])
    convert_metrics = json.loads(Path("metrics/convert_my_robot.json").read_text())
    assert convert_metrics["episodes_kept"] == 10 and convert_metrics["val_episodes"] == 1
    assert (Path("data/rlds/my_robot/1.0.0") / "dataset_info.json").is_file()

    # Step 3: the registry file exactly as written in the README, named in data.registry_file.
    Path("my_datasets.py").write_text(_readme_block("python", "# my_datasets.py"))
    settings = yaml.safe_load(_readme_block("yaml", "stats:\n  dataset_name: my_robot_mix"))
    Path("params.yaml").write_text(yaml.safe_dump(settings))

    # Step 4: statistics with the README's command, then frames from the mixture.
    _invoke(_readme_block("bash", "openvla stats").split()[1:])
    stats = json.loads(Path("data/stats/dataset_statistics.json").read_text())
    assert sorted(stats) == ["libero_embedded", "my_robot"]
    assert stats["my_robot"]["num_trajectories"] == 10 and stats["my_robot"]["num_transitions"] == 120
    assert len(stats["my_robot"]["proprio"]["mean"]) == 8
    summary = json.loads(Path("metrics/stats.json").read_text())
    assert summary["my_robot/num_transitions"] == 120
    assert summary["num_transitions"] == 120 + stats["libero_embedded"]["num_transitions"]
    histogram = Path("plots/stats/my_robot/action_dim6.csv").read_text().splitlines()
    assert histogram[0] == "value,count" and len(histogram) == 51
    assert sum(int(line.split(",")[1]) for line in histogram[1:]) == 120

    import mlflow

    runs = mlflow.search_runs(experiment_names=["openvla-embedded"], filter_string="tags.stage = 'stats'")
    assert len(runs) == 1 and runs.iloc[0]["metrics.my_robot.num_transitions"] == 120

    from openvla.data import load_registry_file, make_dataset
    from openvla.data.torch_dataset import RLDSIterableDataset

    load_registry_file("my_datasets.py")
    frames = make_dataset(
        "data/rlds",
        "my_robot_mix",
        statistics=stats,
        train=True,
        image_size=32,
        shuffle_buffer=64,
        image_augmentation=True,
        seed=0,
    )
    torch_frames = RLDSIterableDataset(lambda: frames.take(60), lambda f: f)
    seen = list(torch_frames)
    assert len(seen) == 60
    names = {f["dataset_name"] for f in seen}
    assert names == {b"my_robot", b"libero_embedded"}
    mine = next(f for f in seen if f["dataset_name"] == b"my_robot")
    assert mine["observation"]["image_primary"].shape == (1, 32, 32, 3)
    assert mine["task"]["language_instruction"] == b"stack the red block"
    assert mine["action"].shape == (1, 1, 7) and np.all(np.abs(mine["action"]) <= 1.0)
