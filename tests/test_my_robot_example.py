"""The README's "Your robot, end to end" journey as one run: ``examples/my_robot`` (six two-camera ``.npz``
episodes → convert → stats → bins → a token-head base standing in for openvla-7b → fine-tune into the L1 head,
K = 4 chunks, proprio and two cameras → export → held-out eval) through DVC, then ``openvla serve`` and a client
sending two raw camera frames and the robot state, which gets a (4, 7) chunk."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

EXAMPLE = REPO_ROOT / "examples" / "my_robot"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pipeline reproduced by DVC in a repository of its own (as a user's copy would be)."""
    root = tmp_path_factory.mktemp("my-robot-repo")
    outputs = shutil.ignore_patterns("data", "runs", "models", "metrics", "plots", "dvc.lock", "mlflow.db")
    shutil.copytree(EXAMPLE, root / "my_robot", ignore=outputs)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)  # the example's runs go to the repository's own mlflow.db
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "my robot"],
                [str(Path(bin_dir) / "dvc"), "init", "-q"],
                [str(Path(bin_dir) / "dvc"), "repro", "my_robot/dvc.yaml"]):  # fmt: skip
        _run(cmd, root, env)
    return root / "my_robot"


def test_the_example_pipeline_bridges_the_base_into_two_cameras_l1_chunks_and_proprio(example_run):
    config = json.loads((example_run / "models" / "my_robot-hf" / "config.json").read_text())
    assert config["camera_roles"] == ["primary", "wrist"] and config["num_images_in_input"] == 2
    assert (config["action_head"], config["action_chunk"], config["use_proprio"]) == ("l1", 4, True)
    assert config["proprio_dim"] == 7  # the example robot's state: xyz + rpy + gripper
    bridged = config["bridged_action_options"]
    assert "action_head: 'tokens' → 'l1'" in bridged and "num_images_in_input: 1 → 2" in bridged
    base = json.loads((example_run / "metrics" / "base.json").read_text())
    finetune = json.loads((example_run / "metrics" / "finetune.json").read_text())
    assert base["steps"] == 60 and finetune["steps"] == 40
    assert 0 < finetune["val.action_l1.last"] < 1 and finetune["val.best_step"] in (20, 40)
    bridge = json.loads((example_run / "metrics" / "bridge.json").read_text())
    assert bridge["episodes"] == 1 and 0 < bridge["l1_normalized"] < 1  # the val split: the last 20% of 6 episodes
    lock = (example_run / "dvc.lock").read_text()
    assert all(f"  {s}:" in lock for s in ("record", "convert", "stats", "bins", "base", "finetune", "export"))


def test_the_robot_gets_a_chunk_for_its_two_raw_camera_frames_and_state(example_run):
    from openvla.policy import Policy
    from openvla.serve.client import ActClient

    model_dir = example_run / "models" / "my_robot-hf"
    episode = np.load(example_run / "data" / "raw" / "my_robot" / "episode_0005.npz")
    primary, wrist, state = episode["image"][3], episode["wrist_image"][3], episode["state"][3]
    assert primary.shape == (96, 96, 3) and wrist.shape == (64, 64, 3)  # raw frames: the server resizes them
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("openvla")), "serve", "--model-dir", str(model_dir), "--port", str(port)],
        cwd=example_run, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with ActClient(f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = client.health()
                    break
                except Exception:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"openvla serve did not come up: {server.stderr.read()[-3000:]}") from None
                    time.sleep(0.5)
            assert health["cameras"] == ["primary", "wrist"] and health["action_chunk"] == 4
            chunk = client.act(primary, "pick up the red block", wrist_image=wrist, proprio=state)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert chunk.shape == (4, 7) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    policy = Policy.from_pretrained(model_dir, device="cpu", dtype="float32")
    observation = {"image": primary, "wrist_image": wrist, "proprio": state, "instruction": "pick up the red block"}
    np.testing.assert_allclose(chunk, policy.act(observation), rtol=0, atol=1e-6)  # the server is this Policy
