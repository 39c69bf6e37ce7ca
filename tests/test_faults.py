"""The fault matrix: what a killed, corrupted or misconfigured run does, kept as tests so it stays that way.

| fault | expected | test |
|---|---|---|
| pretrain SIGKILLed between checkpoints, resumed | same per-step losses and final weights as the uninterrupted run | ``test_killed_pretrain_resumes_exactly`` |
| the killed stage's MLflow run | marked KILLED when the next run starts; the resumed run continues it (same run id, one curve) | ``test_killed_pretrain_continues_its_mlflow_run`` |
| a stage process that died with its MLflow run RUNNING | marked KILLED by the next stage run; live runs untouched | ``test_dead_runs_are_marked_killed_live_ones_are_not`` |
| SIGKILL during a checkpoint write (toy loop) | ``latest`` names the previous complete checkpoint | ``test_train_loop.py::test_kill_during_save_…`` |
| SIGKILL of one rank of a 2-process FSDP job (toy loop) | resumes to the uninterrupted run's weights | ``test_train_loop.py::test_sigkilled_run_…`` |
| corrupt npz member (``zlib.error``) | ``DataError`` naming the file and the member; no partial dataset | ``test_corrupt_npz_member_is_named`` |
| truncated / junk HDF5, NaN actions, wrong action dim | ``DataError`` naming the file (and demo) | ``test_data_convert.py`` |
| unknown mixture in ``data.mixture`` / ``finetune.mixture`` | error naming the params key and the value | ``test_unknown_mixture_names_the_params_key`` |
| the data stream skipped to a position | exactly the frames of the unskipped stream from there | ``test_skipped_stream_equals_the_tail_of_the_full_stream`` |
| unknown key or wrong type in params.yaml | ``ConfigError`` naming file and dotted key | ``test_config.py`` |
"""  # noqa: E501 (a table reads better unwrapped)

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_fixtures import demo_actions, write_libero_hdf5, write_npz_episodes

from openvla.config import ConvertConfig
from openvla.data.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs `openvla pretrain` (the stage itself) and SIGKILLs it right after optimizer step $KILL_AT_STEP.
KILLED_STAGE = """
import os, signal, sys
import openvla.train.pretrain as pretrain_lib
real_fit = pretrain_lib.fit
def fit(*args, **kwargs):
    def on_step_end(step, metrics):
        if step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return real_fit(*args, **{**kwargs, "on_step_end": on_step_end})
pretrain_lib.fit = fit
import typer
from stages.pretrain import main
sys.argv = ["pretrain", *sys.argv[1:]]
typer.run(main)
"""


def build_workspace(root: Path, data: dict, pretrain: dict) -> Path:
    """RLDS (3 episodes of 8 steps: 2 train, 1 held out), statistics, action tokenizer and a params.yaml with the
    ``data`` and ``pretrain`` overrides, under ``root``."""
    from openvla.actions import ActionTokenizer, save_action_tokenizer
    from openvla.data import compute_dataset_statistics
    from openvla.data.convert import convert_dataset
    from openvla.model import get_model_config

    demos = [{"actions": demo_actions(8, seed)} for seed in (0, 1, 2)]
    write_libero_hdf5(root / "raw" / "pick_demo.hdf5", "put the black bowl on the plate", demos, size=32)
    convert_dataset(root / "raw", root / "data" / "rlds", ConvertConfig(dataset_name="libero_embedded"))
    stats = {"libero_embedded": compute_dataset_statistics(root / "data" / "rlds", "libero_embedded")}
    (root / "data" / "stats").mkdir(parents=True)
    (root / "data" / "stats" / "dataset_statistics.json").write_text(json.dumps(stats))
    save_action_tokenizer(ActionTokenizer(get_model_config("tiny").base_vocab_size), root / "data" / "tokenizer")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(data)
    params["pretrain"].update(pretrain)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def stage_args(ws: Path, run: str) -> list[str]:
    """`openvla pretrain` options reading the workspace ``ws`` and writing under ``ws/run``."""
    out = ws / run
    return ["--data-dir", str(ws / "data" / "rlds"), "--statistics", str(ws / "data" / "stats" /
            "dataset_statistics.json"), "--tokenizer-dir", str(ws / "data" / "tokenizer"), "--run-dir",
            str(out / "runs"), "--metrics", str(out / "metrics.json"), "--plots-dir", str(out / "plots"),
            "--device", "cpu", "--params", str(ws / "params.yaml")]  # fmt: skip


def history(run_dir: Path) -> dict[int, float]:
    """Per-step losses of a run directory's ``history.jsonl``."""
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    return {int(r["step"]): r["loss"] for r in rows}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 7-step run: augmentation on and 2 parallel calls, so the resumed stream must match with the shipped
    pipeline's features."""
    data = {"shuffle_buffer": 16, "num_parallel_calls": 2, "num_parallel_reads": 2, "image_augmentation": True}
    pretrain = {"nproc": 1, "steps": 7, "batch_size": 2, "save_every": 3, "keep_last": 2, "lr": 1e-3,
                "schedule": "cosine", "warmup_steps": 2, "cpu_threads": 1}  # fmt: skip
    return build_workspace(tmp_path_factory.mktemp("faults"), data, pretrain)


def _store(ws: Path) -> str:
    return f"sqlite:///{ws / 'mlflow.db'}"


def _run_stage(ws: Path, run: str, kill_at: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), KILL_AT_STEP=str(kill_at),
               MLFLOW_TRACKING_URI=_store(ws))  # fmt: skip
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-c", KILLED_STAGE, *stage_args(ws, run)], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from openvla.train.checkpoint import load_weights, resolve_checkpoint

    return load_weights(resolve_checkpoint(run_dir))


@pytest.fixture(scope="module")
def killed_and_straight(workspace: Path) -> dict[str, object]:
    """One uninterrupted 7-step run; one SIGKILLed after step 5 (checkpoint at 3) and resumed to step 7.

    The killed and resumed runs are the `openvla pretrain` command in subprocesses; the uninterrupted one is the
    same library call in this process (saves a start-up of torch, TensorFlow and transformers)."""
    from openvla.config import load_params
    from openvla.tracking import stage_run
    from openvla.train.pretrain import run_pretrain

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = _store(workspace)
    threads = torch.get_num_threads()
    try:
        params = load_params(workspace / "params.yaml")
        with stage_run("pretrain", params.pretrain, experiment=params.project.name) as run:
            run_pretrain(params, data_dir=workspace / "data" / "rlds",
                         statistics_path=workspace / "data" / "stats" / "dataset_statistics.json",
                         action_tokenizer_dir=workspace / "data" / "tokenizer",
                         run_dir=workspace / "straight" / "runs", plots_dir=workspace / "straight" / "plots",
                         run=run, device="cpu")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    killed = _run_stage(workspace, "killed", kill_at=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    latest_after_kill = (workspace / "killed" / "runs" / "latest").read_text().strip()
    history_after_kill = history(workspace / "killed" / "runs")
    meta_after_kill = json.loads((workspace / "killed" / "runs" / latest_after_kill / "checkpoint.json").read_text())
    resumed = _run_stage(workspace, "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"latest_after_kill": latest_after_kill, "history_after_kill": history_after_kill, "resumed": resumed,
            "meta_after_kill": meta_after_kill}  # fmt: skip


@pytest.mark.slow  # with the next test: 3 tiny pretrain runs, 2 of them in fresh processes (~45-80 s here)
def test_killed_pretrain_resumes_exactly(workspace: Path, killed_and_straight: dict):
    """Kill at step 5 of 7 (last checkpoint: step 3), resume: every step's loss and the final weights are the
    uninterrupted run's (the data position is in the checkpoint; the stream skips to it)."""
    assert killed_and_straight["latest_after_kill"] == "checkpoints/step-000003"
    assert sorted(killed_and_straight["history_after_kill"]) == [1, 2, 3, 4, 5]  # it died after step 5
    assert "resumed from" in killed_and_straight["resumed"].stderr
    straight = history(workspace / "straight" / "runs")
    resumed = history(workspace / "killed" / "runs")
    assert sorted(straight) == sorted(resumed) == list(range(1, 8))
    for step in range(1, 8):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-5, abs=1e-6), step
    assert straight[7] != straight[6]  # the steps really trained on different batches
    # steps 4 and 5 ran twice in the killed run (before the kill and after the resume): same losses both times
    for step in (4, 5):
        assert killed_and_straight["history_after_kill"][step] == pytest.approx(resumed[step], rel=1e-5, abs=1e-6)
    a, b = _weights(workspace / "straight" / "runs"), _weights(workspace / "killed" / "runs")
    assert a.keys() == b.keys()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(
        f"\nuninterrupted losses {[straight[s] for s in range(1, 8)]}\nkilled at 5, resumed at 3: "
        f"{[resumed[s] for s in range(1, 8)]}\nexact resume: max |Δweight| after 7 steps = {diff:.3g}"
    )
    assert diff <= 1e-6
    meta = json.loads((workspace / "killed" / "runs" / "checkpoints" / "step-000007" / "checkpoint.json").read_text())
    assert meta["data"]["frames_per_rank"] == [14] and meta["data"]["samples_seen"] == 14  # 7 steps × batch 2


@pytest.mark.slow
def test_killed_pretrain_continues_its_mlflow_run(workspace: Path, killed_and_straight: dict):
    """The SIGKILLed run stayed RUNNING; the resumed stage marked it KILLED, then continued it: one run id for the
    whole training, one loss curve over steps 1–7, and no second run."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(_store(workspace))
    experiment = client.get_experiment_by_name("openvla-embedded")
    run_id = killed_and_straight["meta_after_kill"]["mlflow_run_id"]
    final_meta = json.loads((workspace / "killed" / "runs" / "checkpoints" / "step-000007" / "checkpoint.json")
                            .read_text())  # fmt: skip
    assert final_meta["mlflow_run_id"] == run_id  # the resumed run wrote its checkpoints under the same run
    straight_id = json.loads((workspace / "straight" / "runs" / "checkpoints" / "step-000007" / "checkpoint.json")
                             .read_text())["mlflow_run_id"]  # fmt: skip
    live = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'pretrain'")
    assert sorted(r.info.run_id for r in live) == sorted([run_id, straight_id])
    deleted = client.search_runs([experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert len(deleted) == 1  # the resumed execution's own run, folded into the continued one
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["openvla.ended_by"].startswith("its process died")  # it was marked KILLED first
    assert run.data.tags["openvla.resumes"] == "1" and run.data.tags["openvla.resumed_at_step.1"] == "3"
    points = client.get_metric_history(run_id, "train.loss")
    values: dict[int, list[float]] = {}
    for point in points:
        values.setdefault(point.step, []).append(point.value)
    assert sorted(values) == list(range(1, 8))  # one continuous curve
    assert sorted(step for step, v in values.items() if len(v) == 2) == [4, 5]  # logged before the kill and again
    for step, logged in values.items():
        assert max(logged) - min(logged) <= 1e-5 * abs(logged[0]) + 1e-6, (step, logged)  # exact resume: same values
    straight = {p.step: p.value for p in client.get_metric_history(straight_id, "train.loss")}
    assert straight.keys() == values.keys()


def test_dead_runs_are_marked_killed_live_ones_are_not(tmp_path):
    from mlflow import MlflowClient

    from openvla.tracking import owner_tags, stage_run, tracking_uri

    code = ("import os, signal\nfrom openvla.tracking import stage_run\n"
            "with stage_run('convert', experiment='exp-dead') as run:\n"
            "    print(run.run_id, flush=True)\n    os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    dead_id = proc.stdout.split()[-1]
    client = MlflowClient(tracking_uri())
    experiment_id = client.get_experiment_by_name("exp-dead").experiment_id
    assert client.get_run(dead_id).info.status == "RUNNING"  # what a SIGKILL leaves behind
    alive_id = client.create_run(experiment_id, tags=owner_tags()).info.run_id  # this process: alive
    elsewhere_id = client.create_run(experiment_id, tags={**owner_tags(), "openvla.host": "another-host"}).info.run_id
    with stage_run("stats", experiment="exp-dead") as run:
        new_id = run.run_id
    assert client.get_run(dead_id).info.status == "KILLED"
    assert client.get_run(alive_id).info.status == "RUNNING"
    assert client.get_run(elsewhere_id).info.status == "RUNNING"  # liveness on another host is not ours to judge
    assert client.get_run(new_id).info.status == "FINISHED"
    with pytest.raises(KeyboardInterrupt), stage_run("stats", experiment="exp-dead") as run:
        interrupted_id = run.run_id
        raise KeyboardInterrupt
    assert client.get_run(interrupted_id).info.status == "KILLED"


def test_skipped_stream_equals_the_tail_of_the_full_stream(workspace: Path):
    from openvla.data import make_dataset

    stats = json.loads((workspace / "data" / "stats" / "dataset_statistics.json").read_text())

    def frames(skip: int, n: int) -> list[tuple[float, float]]:
        ds = make_dataset(workspace / "data" / "rlds", "libero_embedded", statistics=stats, train=True, image_size=32,
                          chunk=8, shuffle_buffer=16, image_augmentation=True, seed=7, num_parallel_calls=2,
                          num_parallel_reads=2, skip_frames=skip)  # fmt: skip
        return [(float(f["action"].sum()), float(f["observation"]["image_primary"].astype(np.float64).sum()))
                for f in ds.take(n).as_numpy_iterator()]  # fmt: skip

    full = frames(0, 45)
    assert frames(0, 45) == full  # deterministic
    assert frames(37, 8) == full[37:]  # past two epochs of 16 frames and the shuffle buffer
    assert len(set(full[:16])) == 16  # distinct frames (augmented images differ)


def test_corrupt_npz_member_is_named(tmp_path):
    """A deflate stream broken inside one member raises zlib.error in numpy; convert names file and member."""
    from openvla.data.convert import convert_dataset

    raw = tmp_path / "raw"
    bad = write_npz_episodes(raw, 2, 5, size=16)[1]
    with zipfile.ZipFile(bad) as archive:
        member = archive.getinfo("image.npy")
    data = bytearray(bad.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    start = member.header_offset + 30 + name_len + extra_len
    data[start : start + 8] = b"\xff" * 8  # an invalid deflate block type
    bad.write_bytes(bytes(data))
    with np.load(bad) as npz, pytest.raises(Exception) as raw_err:
        npz["image"]
    assert type(raw_err.value).__module__ == "zlib"  # the case this test is about
    cfg = ConvertConfig(input_format="npz", dataset_name="my_robot", rotate_180=False, drop_noops=False)
    with pytest.raises(DataError) as err:
        convert_dataset(raw, tmp_path / "rlds", cfg)
    message = str(err.value)
    assert "episode_0001.npz" in message and "'image'" in message and "error" in message, message
    assert not (tmp_path / "rlds").exists() or not any((tmp_path / "rlds").rglob("*"))


@pytest.mark.parametrize(("section", "key"), [("data", "data.mixture"), ("finetune", "finetune.mixture")])
def test_unknown_mixture_names_the_params_key(tmp_path, section: str, key: str):
    from openvla.train.data import mixture_datasets
    from openvla.train.pretrain import load_statistics

    assert mixture_datasets("libero_embedded") == ["libero_embedded"]
    with pytest.raises(DataError) as err:
        load_statistics(tmp_path / "missing.json", "libero_embeded", key)
    message = str(err.value)
    assert f"params {key}:" in message and "'libero_embeded'" in message and "libero_embedded" in message, message


def test_resume_skip_reads_the_data_position_of_the_checkpoint():
    from openvla.train.data import resume_skip
    from openvla.train.distributed import DistInfo

    def rank(r: int, world: int) -> DistInfo:
        return DistInfo(r, world, r, world, torch.device("cpu"), "gloo")

    state = {"step": 4, "samples_seen": 40, "frames_per_rank": [24, 16]}  # uneven: e.g. after a resume
    assert [resume_skip(state, rank(r, 2), frames_per_step=5) for r in (0, 1)] == [24, 16]
    assert resume_skip(state, rank(0, 4), frames_per_step=5) == 10  # other world size: an equal share, not exact
    assert resume_skip({"step": 4}, rank(1, 2), frames_per_step=5) == 20  # a checkpoint from before this record
    assert resume_skip({}, rank(0, 1), frames_per_step=5) == 0
