"""Validation while training (issue 13, item 5): `pretrain` evaluates the held-out split every `eval_every` steps.

The val metrics must reach the metrics JSON (best / last / best step), MLflow (per step) and plots/, and the held-out
action L1 must be what a direct computation on those frames gives (so a made-up number cannot pass)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_fixtures import demo_actions, write_libero_hdf5

from openvla.config import ConvertConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RLDS with 3 episodes and no val split (the last episode is held out), statistics, tokenizer, params."""
    from openvla.actions import ActionTokenizer, save_action_tokenizer
    from openvla.data import compute_dataset_statistics
    from openvla.data.convert import convert_dataset
    from openvla.model import get_model_config

    root = tmp_path_factory.mktemp("validation")
    demos = [{"actions": demo_actions(8, seed)} for seed in (0, 1, 2)]
    write_libero_hdf5(root / "raw" / "pick_demo.hdf5", "put the black bowl on the plate", demos, size=32)
    convert_dataset(root / "raw", root / "data" / "rlds", ConvertConfig(dataset_name="libero_embedded"))
    stats = {"libero_embedded": compute_dataset_statistics(root / "data" / "rlds", "libero_embedded")}
    (root / "data" / "stats").mkdir(parents=True)
    (root / "data" / "stats" / "dataset_statistics.json").write_text(json.dumps(stats))
    save_action_tokenizer(ActionTokenizer(get_model_config("tiny").base_vocab_size), root / "data" / "tokenizer")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(shuffle_buffer=16, num_parallel_calls=1, num_parallel_reads=1, chunk=2, cameras=["primary"])
    params["model"].update(action_head="l1", parallel_decoding=True)
    params["pretrain"].update(nproc=1, steps=4, batch_size=2, save_every=0, keep_last=1, eval_every=2,
                              eval_batches=2, schedule="constant", warmup_steps=0, lr=1e-3)  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield workspace
    torch.set_num_threads(threads)


def _mlflow_history(stage: str, key: str) -> list[tuple[int, float]]:
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("openvla-embedded")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.stage = '{stage}'")
    return sorted((m.step, m.value) for run in runs for m in client.get_metric_history(run.info.run_id, key))


def test_pretrain_validates_on_held_out_frames_every_eval_every_steps(in_workspace: Path):
    from openvla.config import load_params
    from openvla.model import OpenVLAForActionPrediction
    from openvla.train.checkpoint import resolve_checkpoint
    from openvla.train.validation import held_out_frames
    from openvla.train.vla import build_components, model_inputs
    from stages import pretrain

    ws = in_workspace
    pretrain.main(device="cpu")
    summary = json.loads((ws / "metrics" / "pretrain.json").read_text())
    for name in ("action_l1", "gripper_acc", "loss"):
        for which in ("best", "last"):
            assert np.isfinite(summary[f"val.{name}.{which}"]), (name, which)
    assert "val.token_acc.last" not in summary  # the L1 head has no tokens
    assert summary["val.best_step"] in (2, 4) and summary["val_time_s"] > 0
    assert 0.0 <= summary["val.gripper_acc.last"] <= 1.0
    history = _mlflow_history("pretrain", "val.action_l1")
    assert [step for step, _ in history] == [2, 4]
    assert history[-1][1] == pytest.approx(summary["val.action_l1.last"])
    assert min(v for _, v in history) == pytest.approx(summary["val.action_l1.best"])
    with (ws / "plots" / "pretrain" / "val_action_l1.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "val_action_l1"] and [r[0] for r in rows[1:]] == ["2", "4"]

    # The direct computation: the held-out frames (3 episodes → the last one), one at a time through the final
    # checkpoint, L1 against the frames' own normalized action chunks (not the batches the validator built).
    params = load_params(ws / "params.yaml")
    checkpoint = resolve_checkpoint(ws / "runs" / "pretrain")
    model = OpenVLAForActionPrediction.from_pretrained(checkpoint).eval()
    components = build_components(model.config, params.model.tokenizer, ws / "data" / "tokenizer")
    stats = json.loads((ws / "data" / "stats" / "dataset_statistics.json").read_text())
    frames = held_out_frames(data_dir=ws / "data" / "rlds", mixture="libero_embedded", statistics=stats,
                             data_cfg=params.data, image_size=model.config.image_size, num_frames=4,
                             seed=7)  # fmt: skip
    assert len(frames) == 4
    errors = []
    with torch.no_grad():
        for frame in frames:
            batch = components.collator([components.transform(frame)])
            predicted = model(**model_inputs(batch)).actions[0].double().numpy()  # (K, D)
            true = np.asarray(frame["action"], dtype=np.float64)[-1]  # (K, D) normalized, current step's chunk
            errors.append(np.abs(predicted - true))
    direct = float(np.mean(errors))
    # fp32, batch of 2 vs batch of 1: the same arithmetic up to summation order (≈1e-7 relative)
    assert summary["val.action_l1.last"] == pytest.approx(direct, rel=1e-5, abs=1e-6)
