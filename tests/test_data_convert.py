"""convert: LIBERO-style HDF5 → RLDS → make_dataset, value by value; bad inputs fail clearly and leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_fixtures import demo_actions, write_libero_hdf5, write_npz_episodes

from openvla.config import ConvertConfig
from openvla.data.convert import convert_dataset
from openvla.data.errors import DataError

INSTRUCTION = "put the black bowl on the plate"
SIZE = 32


def _demo_specs() -> list[dict]:
    arm_zero_gripper_flip = demo_actions(8, 4)
    arm_zero_gripper_flip[4, :6] = 0.0  # arm no-op but the gripper changes (−1 → +1): kept
    return [
        {"actions": demo_actions(12, 0, noop_steps=(0, 5, 6))},  # steps 0, 5, 6 are no-ops
        {"actions": demo_actions(10, 1), "success": False},  # failed (attribute)
        {"actions": demo_actions(10, 2), "done_last": 0},  # failed (last done == 0, no attribute)
        {"actions": arm_zero_gripper_flip, "success": True},
    ]


EXPECTED_KEEP = {"demo_0": [1, 2, 3, 4, 7, 8, 9, 10, 11], "demo_3": list(range(8))}


@pytest.fixture(scope="module")
def libero_rlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("libero")
    raw = root / "raw"
    write_libero_hdf5(raw / "pick_demo.hdf5", INSTRUCTION, _demo_specs(), size=SIZE)
    metrics = convert_dataset(raw, root / "rlds", ConvertConfig(dataset_name="libero_embedded"))
    return raw, root / "rlds", metrics


def _read_rlds(directory: Path, split: str = "train") -> dict[str, dict]:
    from openvla.tf_import import import_tfds

    tfds = import_tfds()
    builder = tfds.builder_from_directory(str(directory))
    episodes = {}
    for episode in builder.as_dataset(split=split):
        steps = list(episode["steps"].as_numpy_iterator())
        episodes[episode["episode_metadata"]["file_path"].numpy().decode()] = {
            k: np.stack([s[k] for s in steps]) for k in ("action", "is_first", "is_last", "is_terminal", "reward")
        } | {
            "image": np.stack([s["observation"]["image"] for s in steps]),
            "wrist_image": np.stack([s["observation"]["wrist_image"] for s in steps]),
            "state": np.stack([s["observation"]["state"] for s in steps]),
            "joint_state": np.stack([s["observation"].get("joint_state", np.zeros(0)) for s in steps]),
            "instruction": {s["language_instruction"].decode() for s in steps},
        }
    return episodes


def test_convert_counts_failed_demos_and_noops(libero_rlds):
    _, _, metrics = libero_rlds
    assert metrics == {
        "episodes_total": 4,
        "episodes_kept": 2,
        "episodes_dropped_failed": 2,
        "episodes_dropped_noop_only": 0,
        "steps_total": 20,
        "steps_kept": 17,
        "noops_dropped": 3,
        "train_episodes": 2,
        "val_episodes": 0,
    }


def test_convert_writes_rotated_images_and_raw_actions_value_by_value(libero_rlds):
    raw, rlds, _ = libero_rlds
    episodes = _read_rlds(rlds / "libero_embedded" / "1.0.0")
    assert sorted(episodes) == ["pick_demo.hdf5/data/demo_0", "pick_demo.hdf5/data/demo_3"]
    with h5py.File(raw / "pick_demo.hdf5") as f:
        for key, keep in EXPECTED_KEEP.items():
            demo, got = f["data"][key], episodes[f"pick_demo.hdf5/data/{key}"]
            obs = demo["obs"]
            np.testing.assert_array_equal(got["action"], demo["actions"][()][keep].astype(np.float32))
            expected_state = np.hstack([obs["ee_states"][()], obs["gripper_states"][()]])[keep].astype(np.float32)
            np.testing.assert_array_equal(got["state"], expected_state)
            np.testing.assert_array_equal(got["joint_state"], obs["joint_states"][()][keep].astype(np.float32))
            rotated = obs["agentview_rgb"][()][keep][:, ::-1, ::-1]
            assert np.abs(got["image"].astype(int) - rotated).max() <= 3  # JPEG of flat quadrants
            assert got["image"][0, 0, 0, 0] == pytest.approx(10, abs=3)  # BR quadrant moved to the top left
            wrist = obs["eye_in_hand_rgb"][()][keep][:, ::-1, ::-1]
            assert np.abs(got["wrist_image"].astype(int) - wrist).max() <= 3
            n = len(keep)
            np.testing.assert_array_equal(got["is_first"], np.arange(n) == 0)
            np.testing.assert_array_equal(got["is_last"], np.arange(n) == n - 1)
            np.testing.assert_array_equal(got["is_terminal"], np.arange(n) == n - 1)
            np.testing.assert_array_equal(got["reward"], (np.arange(n) == n - 1).astype(np.float32))
            assert got["instruction"] == {INSTRUCTION}


def test_training_stream_repeats_each_episodes_first_steps(libero_rlds):
    from openvla.data import compute_dataset_statistics, make_dataset

    _, rlds, _ = libero_rlds
    stats = {"libero_embedded": compute_dataset_statistics(rlds, "libero_embedded")}
    common = dict(statistics=stats, train=True, image_size=SIZE, shuffle_buffer=0, image_augmentation=False, seed=0,
                  num_parallel_calls=1, num_parallel_reads=1)  # fmt: skip
    ds = make_dataset(rlds, "libero_embedded", start_steps=2, start_weight=3, **common)
    steps = [int(f["observation"]["timestep"][0]) for f in ds.take(9).as_numpy_iterator()]
    assert steps == [0, 0, 0, 1, 1, 1, 2, 3, 4]
    plain = make_dataset(rlds, "libero_embedded", **common)
    assert [int(f["observation"]["timestep"][0]) for f in plain.take(5).as_numpy_iterator()] == [0, 1, 2, 3, 4]


def test_converted_libero_loads_through_make_dataset_normalized_with_gripper_flipped(libero_rlds):
    from openvla.data import compute_dataset_statistics, make_dataset

    raw, rlds, _ = libero_rlds
    stats = compute_dataset_statistics(rlds, "libero_embedded")
    assert stats["num_transitions"] == 17 and stats["num_trajectories"] == 2
    assert stats["action"]["mask"] == [True] * 6 + [False]
    ds = make_dataset(
        rlds,
        "libero_embedded",
        statistics={"libero_embedded": stats},
        train=False,
        image_size=SIZE,
        chunk=2,
        shuffle_buffer=0,
        image_augmentation=False,
        seed=0,
        num_parallel_calls=1,  # frames in episode order
        num_parallel_reads=1,
    )
    frames = list(ds.as_numpy_iterator())
    assert len(frames) == 17
    order = list(_read_rlds(rlds / "libero_embedded" / "1.0.0"))  # the builder's episode order
    a = stats["action"]
    q01, q99 = np.array(a["q01"]), np.array(a["q99"])
    with h5py.File(raw / "pick_demo.hdf5") as f:
        expected_actions, expected_images = [], []
        for source in order:
            key = source.split("/")[-1]
            keep = EXPECTED_KEEP[key]
            raw_actions = f["data"][key]["actions"][()][keep].astype(np.float32)
            arm = np.clip(2 * (raw_actions[:, :6] - q01[:6]) / (q99[:6] - q01[:6] + 1e-8) - 1, -1, 1)
            gripper = 1.0 - np.clip(raw_actions[:, 6:], 0, 1)  # −1 open → 1, +1 close → 0
            normalized = np.hstack([arm, gripper])
            n = len(keep)
            nxt = np.minimum(np.arange(n) + 1, n - 1)
            expected_actions += [np.stack([normalized[t], normalized[nxt[t]]]) for t in range(n)]
            images = f["data"][key]["obs"]["agentview_rgb"][()][keep][:, ::-1, ::-1]
            expected_images += list(images)
    for i, frame in enumerate(frames):
        assert frame["action"].shape == (1, 2, 7) and frame["action"].dtype == np.float32
        np.testing.assert_allclose(frame["action"][0], expected_actions[i], atol=1e-5)
        assert frame["observation"]["image_primary"].shape == (1, SIZE, SIZE, 3)
        assert np.abs(frame["observation"]["image_primary"][0].astype(int) - expected_images[i]).max() <= 4
        assert frame["task"]["language_instruction"] == INSTRUCTION.encode()
        assert frame["dataset_name"] == b"libero_embedded"
        assert frame["observation"]["pad_mask"].tolist() == [True]
        assert frame["observation"]["proprio"].shape == (1, 8)
    # action_pad_mask: True only for the clamped second action of each episode's last step.
    pad = [bool(f["action_pad_mask"][0, 1]) for f in frames]
    assert sum(pad) == 2 and not any(bool(f["action_pad_mask"][0, 0]) for f in frames)
    assert {round(float(f["action"][0, 0, 6]), 6) for f in frames} == {0.0, 1.0}


def test_val_fraction_puts_last_episodes_in_val(tmp_path):
    specs = [{"actions": demo_actions(6, s)} for s in range(5)]
    write_libero_hdf5(tmp_path / "raw" / "a_demo.hdf5", INSTRUCTION, specs, size=16)
    metrics = convert_dataset(tmp_path / "raw", tmp_path / "rlds", ConvertConfig(val_fraction=0.4))
    assert (metrics["train_episodes"], metrics["val_episodes"]) == (3, 2)
    val = _read_rlds(tmp_path / "rlds" / "libero_embedded" / "1.0.0", split="val")
    assert sorted(val) == ["a_demo.hdf5/data/demo_3", "a_demo.hdf5/data/demo_4"]


# ------------------------------------------------------------------------------------------------------------------
# Bad inputs: a clear error naming the file and the problem, and no partial output.
# ------------------------------------------------------------------------------------------------------------------
def _good_raw(directory: Path) -> Path:
    return write_libero_hdf5(directory / "good_demo.hdf5", INSTRUCTION, [{"actions": demo_actions(6, 0)}], size=16)


def _assert_fails_cleanly(raw: Path, out: Path, *fragments: str, cfg: ConvertConfig | None = None) -> None:
    with pytest.raises(DataError) as err:
        convert_dataset(raw, out, cfg or ConvertConfig())
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    leftovers = [p for p in out.rglob("*")] if out.exists() else []
    assert leftovers == [], f"partial output left: {leftovers}"


def test_truncated_hdf5_is_reported_with_its_name_and_nothing_written(tmp_path):
    raw = tmp_path / "raw"
    _good_raw(raw)
    bad = write_libero_hdf5(raw / "trunc_demo.hdf5", INSTRUCTION, [{"actions": demo_actions(40, 1)}], size=64)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    _assert_fails_cleanly(raw, tmp_path / "rlds", "trunc_demo.hdf5", "truncated or corrupt")


def test_corrupt_hdf5_is_reported_with_its_name(tmp_path):
    raw = tmp_path / "raw"
    _good_raw(raw)
    (raw / "junk_demo.hdf5").write_bytes(b"not an hdf5 file" * 100)
    _assert_fails_cleanly(raw, tmp_path / "rlds", "junk_demo.hdf5", "not a readable HDF5 file")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_actions_are_reported_with_file_demo_and_step(tmp_path, bad_value):
    raw = tmp_path / "raw"
    _good_raw(raw)
    actions = demo_actions(6, 1)
    actions[3, 2] = bad_value
    write_libero_hdf5(raw / "nan_demo.hdf5", INSTRUCTION, [{"actions": actions}], size=16)
    _assert_fails_cleanly(raw, tmp_path / "rlds", "nan_demo.hdf5:data/demo_0", "NaN or inf", "[3]")


def test_wrong_action_dimension_is_reported(tmp_path):
    raw = tmp_path / "raw"
    write_libero_hdf5(raw / "dim_demo.hdf5", INSTRUCTION, [{"actions": demo_actions(6, 1)[:, :6]}], size=16)
    _assert_fails_cleanly(raw, tmp_path / "rlds", "dim_demo.hdf5:data/demo_0", "(6, 6)", "expected (T, 7)")


def test_missing_instruction_is_reported(tmp_path):
    raw = tmp_path / "raw"
    path = write_libero_hdf5(raw / "noinst_demo.hdf5", INSTRUCTION, [{"actions": demo_actions(6, 1)}], size=16)
    with h5py.File(path, "a") as f:
        f["data"].attrs["problem_info"] = json.dumps({"problem_name": "x"})
    _assert_fails_cleanly(raw, tmp_path / "rlds", "noinst_demo.hdf5", "no language_instruction")


def test_npz_missing_instruction_is_reported(tmp_path):
    raw = tmp_path / "raw"
    write_npz_episodes(raw, 2, 5, size=16)
    episode = dict(np.load(raw / "episode_0001.npz"))
    del episode["language_instruction"]
    np.savez(raw / "episode_0001.npz", **episode)
    cfg = ConvertConfig(input_format="npz", dataset_name="my_robot", rotate_180=False, drop_noops=False)
    _assert_fails_cleanly(raw, tmp_path / "rlds", "episode_0001.npz", "missing 'language_instruction'", cfg=cfg)


def test_failed_conversion_keeps_the_previous_dataset_intact(tmp_path):
    raw = tmp_path / "raw"
    _good_raw(raw)
    convert_dataset(raw, tmp_path / "rlds", ConvertConfig())
    before = sorted(p.name for p in (tmp_path / "rlds" / "libero_embedded" / "1.0.0").iterdir())
    actions = demo_actions(6, 1)
    actions[0, 0] = np.nan
    write_libero_hdf5(raw / "nan_demo.hdf5", INSTRUCTION, [{"actions": actions}], size=16)
    with pytest.raises(DataError, match=r"nan_demo\.hdf5"):
        convert_dataset(raw, tmp_path / "rlds", ConvertConfig())
    assert sorted(p.name for p in (tmp_path / "rlds" / "libero_embedded" / "1.0.0").iterdir()) == before
    assert [p.name for p in (tmp_path / "rlds").iterdir()] == ["libero_embedded"]  # no temporary left


def test_unreadable_images_in_phase_two_leave_no_output(tmp_path):
    """An image problem found while writing (after validation) still removes the temporary dataset."""
    raw = tmp_path / "raw"
    write_npz_episodes(raw, 2, 5, size=16)
    episode = dict(np.load(raw / "episode_0001.npz"))
    episode["image"] = episode["image"][:, :, :, :1]  # (T, H, W, 1): not RGB
    np.savez(raw / "episode_0001.npz", **episode)
    cfg = ConvertConfig(input_format="npz", dataset_name="my_robot", rotate_180=False, drop_noops=False)
    _assert_fails_cleanly(raw, tmp_path / "rlds", "episode_0001.npz", "expected uint8 (T, H, W, 3)", cfg=cfg)


def test_wrist_camera_loads_and_a_missing_camera_is_black_and_masked(libero_rlds):
    from openvla.data import compute_dataset_statistics, make_dataset

    _, rlds, _ = libero_rlds
    ds = make_dataset(
        rlds,
        "libero_embedded",
        statistics={"libero_embedded": compute_dataset_statistics(rlds, "libero_embedded")},
        train=False,
        image_size=16,
        shuffle_buffer=0,
        image_augmentation=False,
        seed=0,
        load_camera_views=("primary", "secondary", "wrist"),
    )
    frame = next(ds.as_numpy_iterator())
    obs = frame["observation"]
    assert obs["image_wrist"].shape == obs["image_primary"].shape == (1, 16, 16, 3)
    assert obs["image_wrist"][0, 12, 12, 0] > 100  # wrist quadrants are 100 levels brighter than agentview's
    assert not obs["image_secondary"].any()  # LIBERO has no secondary camera: black ...
    assert obs["pad_mask_dict"]["image_secondary"].tolist() == [False]  # ... and marked as padding
    assert obs["pad_mask_dict"]["image_wrist"].tolist() == [True]


def test_convert_resizes_images_when_asked(tmp_path):
    write_npz_episodes(tmp_path / "raw", 2, 4, size=32)
    cfg = ConvertConfig(input_format="npz", dataset_name="my_robot", rotate_180=False, drop_noops=False, image_size=16)
    convert_dataset(tmp_path / "raw", tmp_path / "rlds", cfg)
    episodes = _read_rlds(tmp_path / "rlds" / "my_robot" / "1.0.0")
    assert {e["image"].shape[1:] for e in episodes.values()} == {(16, 16, 3)}
    assert {e["wrist_image"].shape[1:] for e in episodes.values()} == {(16, 16, 3)}


def test_convert_writes_the_same_bytes_in_every_process(libero_rlds, tmp_path):
    """Two processes converting the same raw episodes write byte-identical TFRecords (DVC then skips the stages after
    `convert`). Without deterministic serialization the feature map's order differs per process, so one process
    alone could not show it: the second conversion runs in a fresh interpreter."""
    import hashlib
    import subprocess
    import sys

    raw, rlds, _ = libero_rlds
    out = tmp_path / "rlds"
    script = (
        "import sys; from pathlib import Path; from openvla.config import ConvertConfig; "
        "from openvla.data.convert import convert_dataset; "
        "convert_dataset(Path(sys.argv[1]), Path(sys.argv[2]), ConvertConfig(dataset_name='libero_embedded'))"
    )
    subprocess.run([sys.executable, "-c", script, str(raw), str(out)], check=True, capture_output=True)

    def digests(directory: Path) -> dict[str, str]:
        files = sorted(directory.glob("libero_embedded/*/*.tfrecord*"))
        assert files, f"no TFRecord under {directory}"
        return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in files}

    assert digests(out) == digests(rlds)
