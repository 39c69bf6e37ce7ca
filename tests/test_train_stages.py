"""The `pretrain` and `finetune` stage commands end to end on a tiny RLDS dataset: outputs, metrics, plots, MLflow
per-step metrics, resume of a finished run extended by one step, and a merged model with `norm_stats` filled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from data_fixtures import demo_actions, write_libero_hdf5

from openvla.config import ConvertConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RLDS (2 episodes), statistics, uniform action tokenizer and a params.yaml with tiny step counts."""
    from openvla.actions import ActionTokenizer, save_action_tokenizer
    from openvla.data import compute_dataset_statistics
    from openvla.data.convert import convert_dataset
    from openvla.model import get_model_config

    root = tmp_path_factory.mktemp("stages")
    demos = [{"actions": demo_actions(8, seed)} for seed in (0, 1)]
    write_libero_hdf5(root / "raw" / "pick_demo.hdf5", "put the black bowl on the plate", demos, size=32)
    convert_dataset(root / "raw", root / "data" / "rlds", ConvertConfig(dataset_name="libero_embedded"))
    stats = {"libero_embedded": compute_dataset_statistics(root / "data" / "rlds", "libero_embedded")}
    (root / "data" / "stats").mkdir(parents=True)
    (root / "data" / "stats" / "dataset_statistics.json").write_text(json.dumps(stats))
    save_action_tokenizer(ActionTokenizer(get_model_config("tiny").base_vocab_size), root / "data" / "tokenizer")

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(shuffle_buffer=16, num_parallel_calls=1, num_parallel_reads=1)
    # A constant schedule, whatever the shipped default: extending `steps` must then resume the finished run.
    params["pretrain"].update(
        nproc=1, steps=2, batch_size=2, save_every=1, keep_last=1, lr=1e-3, schedule="constant", warmup_steps=0
    )
    params["finetune"].update(steps=2, batch_size=2, save_every=0, lora_rank=4)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield workspace
    torch.set_num_threads(threads)


def _set(params_path: Path, section: str, **values) -> None:
    params = yaml.safe_load(params_path.read_text())
    params[section].update(values)
    params_path.write_text(yaml.safe_dump(params))


def _mlflow_metric_history(stage: str, key: str) -> list[int]:
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("openvla-embedded")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.stage = '{stage}'")
    return sorted(m.step for run in runs for m in client.get_metric_history(run.info.run_id, key))


def test_pretrain_then_finetune_stages(in_workspace: Path):
    from openvla.model import OpenVLAForActionPrediction
    from stages import finetune, pretrain

    ws = in_workspace
    pretrain.main(device="cpu")  # every path option at its dvc.yaml default, relative to the workspace
    run_dir = ws / "runs" / "pretrain"
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-000002"
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-000002"]  # keep_last: 1
    assert json.loads((run_dir / "dataset_statistics.json").read_text()).keys() == {"libero_embedded"}
    assert json.loads((run_dir / "config.json").read_text())["norm_stats"].keys() == {"libero_embedded"}
    summary = json.loads((ws / "metrics" / "pretrain.json").read_text())
    assert summary["steps"] == 2 and summary["resumed_from_step"] == 0 and summary["world_size"] == 1
    keys = ["final_loss", "final_l1", "samples_per_s", "peak_rss_mb"]
    shipped_head = yaml.safe_load((ws / "params.yaml").read_text())["model"]["action_head"]
    keys += ["final_action_accuracy"] if shipped_head == "tokens" else []  # the L1 head has no token accuracy
    for key in keys:
        assert isinstance(summary[key], float), key
    assert ("final_action_accuracy" in summary) is (shipped_head == "tokens")
    assert (ws / "plots" / "pretrain" / "loss.csv").read_text().splitlines()[0] == "step,loss"
    assert _mlflow_metric_history("pretrain", "train.loss") == [1, 2]

    _set(ws / "params.yaml", "pretrain", steps=3)  # constant schedule: a longer run resumes the finished one
    pretrain.main(device="cpu")
    summary = json.loads((ws / "metrics" / "pretrain.json").read_text())
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 3 and summary["steps_this_run"] == 1
    rows = (ws / "plots" / "pretrain" / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]

    finetune.main(device="cpu")
    merged = ws / "runs" / "finetune" / "merged"
    config = json.loads((merged / "config.json").read_text())
    assert config["norm_stats"] == json.loads((merged / "dataset_statistics.json").read_text())
    assert config["norm_stats"].keys() == {"libero_embedded"}
    for name in ("model.safetensors", "tokenizer_config.json", "preprocessor_config.json"):
        assert (merged / name).is_file(), name
    assert (ws / "runs" / "finetune" / "adapter" / "adapter_config.json").is_file()
    ft = json.loads((ws / "metrics" / "finetune.json").read_text())
    assert ft["steps"] == 2 and ft["merge_max_abs_logit_diff"] < 1e-3
    assert ft["trainable_params"] < ft["total_params"] / 5
    model = OpenVLAForActionPrediction.from_pretrained(merged)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert model.get_action_dim() == 7  # norm_stats usable for unnormalization

    # `dvc repro` after a code change reruns both stages on finished run directories: nothing trains, and the
    # metrics still say what the training measured (summary.json in the run directory), not an empty summary
    trained = json.loads((ws / "metrics" / "pretrain.json").read_text())
    pretrain.main(device="cpu")
    rerun = json.loads((ws / "metrics" / "pretrain.json").read_text())
    assert rerun["steps_this_run"] == 0 and rerun["resumed_from_step"] == 3
    assert rerun["final_loss"] == trained["final_loss"] and rerun["samples_per_s"] == trained["samples_per_s"]
    finetune.main(device="cpu")
    ft_rerun = json.loads((ws / "metrics" / "finetune.json").read_text())
    assert ft_rerun["steps_this_run"] == 0 and ft_rerun["resumed_from_step"] == 2
    assert ft_rerun["final_loss"] == ft["final_loss"] and ft_rerun["steps"] == 2
