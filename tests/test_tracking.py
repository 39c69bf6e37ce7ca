"""MLflow wiring: one run per stage execution with tags, params, per-step metrics and artifacts."""

from __future__ import annotations

import json

import mlflow
import pytest

from openvla.config import BinsConfig
from openvla.tracking import stage_run, tracking_uri, write_metrics


def test_stage_run_logs_params_metrics_and_artifacts(tmp_path):
    artifact = tmp_path / "summary.json"
    artifact.write_text('{"ok": true}')
    with stage_run("bins", BinsConfig(n_bins=64), experiment="exp-test") as run:
        run.log_metrics({"loss": 2.0, "skip/nan": float("nan"), "flag": True}, step=0)
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_artifact(artifact)
        run_id = run.run_id

    client = mlflow.tracking.MlflowClient(tracking_uri())
    data = client.get_run(run_id).data
    assert data.tags["stage"] == "bins"
    assert "git.commit" in data.tags
    assert data.params["n_bins"] == "64"
    assert data.params["scheme"] == "uniform"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0)]
    assert data.metrics["flag"] == 1.0
    assert "skip.nan" not in data.metrics  # non-finite values are dropped, not logged as garbage
    assert [a.path for a in client.list_artifacts(run_id)] == ["summary.json"]
    experiment = client.get_experiment_by_name("exp-test")
    assert client.get_run(run_id).info.experiment_id == experiment.experiment_id


def test_failed_stage_marks_the_run_failed():
    with pytest.raises(RuntimeError), stage_run("convert", experiment="exp-fail") as run:
        run_id = run.run_id
        raise RuntimeError("boom")
    client = mlflow.tracking.MlflowClient(tracking_uri())
    assert client.get_run(run_id).info.status == "FAILED"


def test_tracking_can_be_disabled(monkeypatch):
    monkeypatch.setenv("OPENVLA_TRACKING", "off")
    with stage_run("stats") as run:
        assert not run.active
        run.log_metrics({"x": 1.0})  # no-op, no store touched
        assert run.run_id is None


def test_write_metrics_is_plain_json(tmp_path):
    path = tmp_path / "metrics" / "stage.json"
    write_metrics(path, {"a": 1, "b": 0.5})
    assert json.loads(path.read_text()) == {"a": 1, "b": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["stage.json"]  # no temp files left behind


def test_default_store_is_the_dvc_repository_so_temp_experiments_keep_their_runs(tmp_path, monkeypatch):
    """`dvc exp run --temp` runs stages in a throwaway copy with DVC_ROOT pointing at the user's repository."""
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    repo.mkdir()
    copy.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_uri() == f"sqlite:///{copy.resolve() / 'mlflow.db'}"  # outside DVC: the working directory
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert tracking_uri() == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    with stage_run("bins", BinsConfig(), experiment="exp-temp") as run:
        run.log_metrics({"loss": 1.0})
        run_id = run.run_id
    client = mlflow.tracking.MlflowClient(f"sqlite:///{repo.resolve() / 'mlflow.db'}")
    assert client.get_run(run_id).info.artifact_uri.startswith((repo.resolve() / "mlartifacts").as_uri())
    assert not (copy / "mlflow.db").exists()
