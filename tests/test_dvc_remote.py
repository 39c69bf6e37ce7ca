"""Artifacts through a DVC remote: one machine runs the pipeline and pushes; another clones, pulls, and has nothing
left to run. A tiny two-stage pipeline shaped like ours (params, a cached output, a persistent output, metrics kept
in git) in a temporary directory, with a local-directory remote standing in for S3/GCS/SSH (README)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~15 dvc/git commands; well under a minute

DVC_YAML = """\
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py]
    params: [prepare.n]
    outs: [data/rlds]
  train:
    cmd: python train.py
    deps: [train.py, data/rlds]
    params: [train.scale]
    outs:
      - runs/train:
          persist: true
    metrics:
      - metrics/train.json:
          cache: false
"""

PREPARE = """\
import pathlib, yaml
n = yaml.safe_load(open("params.yaml"))["prepare"]["n"]
out = pathlib.Path("data/rlds"); out.mkdir(parents=True, exist_ok=True)
for i in range(n):
    (out / f"episode_{i}.txt").write_text(" ".join(str(i * 10 + t) for t in range(5)))
"""

TRAIN = """\
import json, pathlib, yaml
scale = yaml.safe_load(open("params.yaml"))["train"]["scale"]
total = sum(sum(map(int, p.read_text().split())) for p in sorted(pathlib.Path("data/rlds").iterdir()))
out = pathlib.Path("runs/train/checkpoints"); out.mkdir(parents=True, exist_ok=True)
(out / "model.txt").write_text(str(total * scale))
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("metrics/train.json").write_text(json.dumps({"total": total * scale}))
"""


def _dvc() -> str:
    here = Path(sys.executable).with_name("dvc")  # the venv's dvc, beside its python
    found = str(here) if here.is_file() else shutil.which("dvc")
    if not found:
        pytest.skip("dvc is not installed")
    return found


def _env() -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # stages' `python` is ours
    return env


def _run(cwd: Path, *cmd: str) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def test_pipeline_outputs_travel_through_a_dvc_remote_to_a_fresh_clone(tmp_path):
    dvc = _dvc()
    origin, clone, remote = tmp_path / "origin", tmp_path / "clone", tmp_path / "remote"
    origin.mkdir()
    (origin / "dvc.yaml").write_text(DVC_YAML)
    (origin / "params.yaml").write_text("prepare:\n  n: 3\ntrain:\n  scale: 2\n")
    (origin / "prepare.py").write_text(PREPARE)
    (origin / "train.py").write_text(TRAIN)
    _run(origin, "git", "init", "-q", "-b", "main")
    _run(origin, dvc, "init", "-q")
    out = _run(origin, dvc, "repro")
    assert "Running stage 'prepare'" in out and "Running stage 'train'" in out
    # The machine that computed the artifacts shares them (README: `dvc remote add -d storage s3://…`).
    _run(origin, dvc, "remote", "add", "-d", "storage", str(remote))
    _run(origin, "git", "add", "-A")
    _run(origin, "git", "commit", "-q", "-m", "pipeline, lock file and remote")
    assert "files pushed" in _run(origin, dvc, "push")
    objects = [p for p in remote.rglob("*") if p.is_file()]
    assert len(objects) == 6  # 3 episodes + the checkpoint + 2 directory manifests (content-addressed)
    model = (origin / "runs" / "train" / "checkpoints" / "model.txt").read_text()
    assert model == str(2 * sum(i * 10 * 5 + 10 for i in range(3)))  # 2 × (sum of 0..4 + 10i·5 per episode)

    # A second machine: a fresh clone has the code, dvc.lock and the git-tracked metrics, but no artifacts.
    _run(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    assert not (clone / "data" / "rlds").exists() and not (clone / "runs" / "train").exists()
    missing = _run(clone, dvc, "status")
    assert "deleted" in missing and "up to date" not in missing
    _run(clone, dvc, "pull")
    assert "Data and pipelines are up to date." in _run(clone, dvc, "status")
    assert (clone / "runs" / "train" / "checkpoints" / "model.txt").read_text() == model
    assert sorted(p.name for p in (clone / "data" / "rlds").iterdir()) == [f"episode_{i}.txt" for i in range(3)]
    repro = _run(clone, dvc, "repro")
    assert "Running stage" not in repro  # nothing to recompute
    assert "Data and pipelines are up to date." in repro
