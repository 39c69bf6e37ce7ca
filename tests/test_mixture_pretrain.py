"""Pretraining on a mixture (issue 15): the ``pretrain`` stage on 2 processes (torchrun, gloo) over a mixture of
three registered synthetic datasets in Open X-Embodiment layouts (RT-1's action dict and instruction in the
observation; Bridge's two cameras with the first and last steps dropped; LIBERO's ±1 gripper), with balancing
weights. Each dataset's share of the samples trained on is within 10% of its balanced weight (weight × transitions,
normalized), and the per-dataset metrics are recorded for all three.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("mixture_pretrain_driver.py")
EPISODES, LENGTH = 4, 12
WEIGHTS = {"synth_rt1": 1.0, "synth_bridge": 1.5, "synth_libero": 1.25}
# Transitions after standardization: Bridge drops its first step and (relabelling) its last one.
TRANSITIONS = {
    "synth_rt1": EPISODES * LENGTH,
    "synth_bridge": EPISODES * (LENGTH - 2),
    "synth_libero": EPISODES * LENGTH,
}
STEPS, BATCH = 48, 32  # global batch 32 = 16 per rank: 1536 samples

REGISTRY_FILE = """
import dataclasses
from openvla.data import get_dataset_config, register_dataset, register_mixture

for name, like in (("synth_rt1", "fractal20220817_data"), ("synth_bridge", "bridge_dataset"),
                   ("synth_libero", "libero_spatial_no_noops")):
    register_dataset(name, dataclasses.replace(get_dataset_config(like), builder_names=()), overwrite=True)
register_mixture("synth_soup", [("synth_rt1", 1.0), ("synth_bridge", 1.5), ("synth_libero", 1.25)], overwrite=True)
"""


def _write_datasets(data_dir: Path) -> None:
    from openvla.data.rlds_writer import write_rlds
    from openvla.tf_import import import_tfds

    tfds = import_tfds()
    f = tfds.features
    rng = np.random.default_rng(0)

    def image():
        return f.Image(shape=(32, 32, 3), dtype=np.uint8, encoding_format="jpeg")

    def vec(n):
        return f.Tensor(shape=(n,), dtype=np.float32)

    def flags(obs, action, lang_in_obs: bool):
        steps = {"observation": f.FeaturesDict(obs), "action": action, "is_first": np.bool_, "is_last": np.bool_,
                 "is_terminal": np.bool_, "reward": np.float32, "discount": np.float32}  # fmt: skip
        if not lang_in_obs:
            steps["language_instruction"] = f.Text()
        return f.FeaturesDict({"steps": f.Dataset(steps)})

    def images(n):
        return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)

    def rl(n):
        last = np.arange(n) == n - 1
        return {"is_first": np.arange(n) == 0, "is_last": last, "is_terminal": last,
                "reward": last.astype(np.float32), "discount": np.ones(n, np.float32)}  # fmt: skip

    def source(make):
        return lambda: ((f"ep{i}", {"steps": make(i)}) for i in range(EPISODES))

    def rt1_steps(i):
        n = LENGTH
        command = np.zeros((n, 1), np.float32)
        command[3], command[8] = 1.0, -1.0  # close, later open; the rest are no-ops
        return {
            "observation": {"image": images(n), "base_pose_tool_reached": rng.normal(size=(n, 7)).astype(np.float32),
                            "gripper_closed": rng.uniform(size=(n, 1)).astype(np.float32),
                            "natural_language_instruction": ["pick the can"] * n},
            "action": {"world_vector": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                       "rotation_delta": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                       "gripper_closedness_action": command},
            **rl(n),
        }  # fmt: skip

    def bridge_steps(i):
        n = LENGTH
        action = rng.uniform(-0.05, 0.05, (n, 7)).astype(np.float32)
        action[:, 6] = np.where(np.arange(n) < 6, 1.0, 0.0)
        return {"observation": {"image_0": images(n), "image_1": images(n),
                                "state": np.cumsum(rng.normal(0, 0.01, (n, 7)), 0).astype(np.float32)},
                "action": action, "language_instruction": ["put the spoon in the pot"] * n, **rl(n)}  # fmt: skip

    def libero_steps(i):
        n = LENGTH
        action = rng.uniform(-1, 1, (n, 7)).astype(np.float32)
        action[:, 6] = np.where(np.arange(n) < 5, -1.0, 1.0)
        return {"observation": {"image": images(n), "wrist_image": images(n),
                                "state": rng.normal(size=(n, 8)).astype(np.float32)},
                "action": action, "language_instruction": ["open the drawer"] * n, **rl(n)}  # fmt: skip

    rt1 = flags({"image": image(), "base_pose_tool_reached": vec(7), "gripper_closed": vec(1),
                 "natural_language_instruction": f.Text()},
                f.FeaturesDict({"world_vector": vec(3), "rotation_delta": vec(3), "gripper_closedness_action": vec(1)}),
                lang_in_obs=True)  # fmt: skip
    bridge = flags({"image_0": image(), "image_1": image(), "state": vec(7)}, vec(7), lang_in_obs=False)
    libero = flags({"image": image(), "wrist_image": image(), "state": vec(8)}, vec(7), lang_in_obs=False)
    write_rlds(data_dir, "synth_rt1", "1.0.0", rt1, {"train": source(rt1_steps)})
    write_rlds(data_dir, "synth_bridge", "1.0.0", bridge, {"train": source(bridge_steps)})
    write_rlds(data_dir, "synth_libero", "1.0.0", libero, {"train": source(libero_steps)})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from openvla.actions import ActionTokenizer, save_action_tokenizer
    from openvla.data import compute_dataset_statistics, load_registry_file, registry
    from openvla.model import get_model_config

    root = tmp_path_factory.mktemp("mixture")
    (root / "registry.py").write_text(REGISTRY_FILE)
    registry.dataset_names()  # the built-in entries loaded, so that they are part of what is restored
    saved = dict(registry._DATASETS), dict(registry._MIXTURES)
    load_registry_file(root / "registry.py")  # for the statistics; the training processes load it themselves
    _write_datasets(root / "data" / "rlds")
    stats = {name: compute_dataset_statistics(root / "data" / "rlds", name) for name in WEIGHTS}
    (root / "data" / "stats").mkdir(parents=True)
    (root / "data" / "stats" / "dataset_statistics.json").write_text(json.dumps(stats))
    save_action_tokenizer(ActionTokenizer(get_model_config("tiny").base_vocab_size), root / "data" / "tokenizer")

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(mixture="synth_soup", registry_file=str(root / "registry.py"), shuffle_buffer=64,
                          num_parallel_calls=1, num_parallel_reads=1, image_augmentation=False, chunk=1,
                          use_proprio=False, balance_weights=True)  # fmt: skip
    params["model"].update(action_head="tokens", parallel_decoding=False)
    params["pretrain"].update(nproc=2, strategy="ddp", steps=STEPS, batch_size=BATCH, save_every=0, keep_last=1,
                              log_every=1, schedule="constant", warmup_steps=0, cpu_threads=1)  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    yield root
    for table, entries in zip((registry._DATASETS, registry._MIXTURES), saved, strict=True):
        table.clear()
        table.update(entries)  # leave this process's registry as it was for the other tests


@pytest.mark.slow
def test_pretrain_on_a_mixture_samples_each_dataset_by_its_balanced_weight(workspace: Path):
    out = workspace / "shares"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", OPENVLA_SHARE_OUT=str(out),
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(DRIVER)]
    proc = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    summary = json.loads((workspace / "metrics" / "pretrain.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == STEPS
    counts: dict[str, int] = {}
    for rank in (0, 1):
        for name, n in json.loads((out / f"rank{rank}.json").read_text()).items():
            counts[name] = counts.get(name, 0) + n
    total = sum(counts.values())
    assert total == STEPS * BATCH and set(counts) == set(WEIGHTS)
    balanced = {n: WEIGHTS[n] * TRANSITIONS[n] for n in WEIGHTS}
    expected = {n: v / sum(balanced.values()) for n, v in balanced.items()}
    shares = {n: counts[n] / total for n in WEIGHTS}
    print("mixture shares (trained samples / balanced weight):",
          {n: (round(shares[n], 4), round(expected[n], 4)) for n in WEIGHTS})  # fmt: skip
    for name in WEIGHTS:
        assert abs(shares[name] - expected[name]) <= 0.1 * expected[name], (name, shares, expected)

    # The per-dataset metrics of a mixed batch are recorded for every dataset of the mixture.
    rows = [json.loads(line) for line in (workspace / "runs" / "pretrain" / "history.jsonl").read_text().splitlines()]
    keys = set().union(*(row.keys() for row in rows))
    for name in WEIGHTS:
        assert f"{name}/action_accuracy" in keys and f"{name}/l1" in keys, sorted(keys)
