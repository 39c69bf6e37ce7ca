"""The real BridgeData debug set (../shared) through the ``bridge_orig`` transform, statistics checked against an
independent numpy computation from the raw TFRecords; corrupt TFRecords and unknown names fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from openvla.data.errors import DataError


def _raw_bridge_episodes(data_dir: Path) -> list[dict[str, np.ndarray]]:
    """Parse every episode of every split straight from the TFRecords with tf.train.Example (no TFDS)."""
    from openvla.tf_import import import_tensorflow

    tf = import_tensorflow()
    episodes = []
    for shard in sorted((data_dir / "bridge_dataset" / "1.0.0").glob("*.tfrecord-*")):
        for record in tf.data.TFRecordDataset(str(shard)).as_numpy_iterator():
            example = tf.train.Example.FromString(record).features.feature
            action = np.array(example["steps/action"].float_list.value, np.float32).reshape(-1, 7)
            state = np.array(example["steps/observation/state"].float_list.value, np.float32).reshape(-1, 7)
            episodes.append({"action": action, "state": state})
    return episodes


def _binarize(gripper: np.ndarray) -> np.ndarray:
    """The documented rule, by hand: > 0.95 → 1, < 0.05 → 0, in-between takes the next settled value (a trailing
    in-between run keeps the last raw value)."""
    out = np.empty_like(gripper)
    carry = gripper[-1]
    for i in range(len(gripper) - 1, -1, -1):
        if gripper[i] > 0.95:
            carry = 1.0
        elif gripper[i] < 0.05:
            carry = 0.0
        out[i] = carry
    return out


def _bridge_orig_by_hand(action: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    action, state = action[1:], state[1:]  # drop step 0
    gripper = _binarize(action[:, 6])
    movement = state[1:, :6] - state[:-1, :6]  # relabel from reached states; the last step has none
    new_action = np.hstack([movement, gripper[:-1, None]])
    proprio = np.hstack([state[:-1, :6], state[:-1, 6:7]])
    return new_action, proprio


def _numpy_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    return {
        "mean": x.mean(0),
        "std": x.std(0),
        "max": x.max(0),
        "min": x.min(0),
        "q01": np.quantile(x, 0.01, axis=0),
        "q99": np.quantile(x, 0.99, axis=0),
    }


def test_bridge_statistics_match_independent_numpy_from_raw_tfrecords(bridge_data_dir):
    from openvla.data import compute_dataset_statistics

    stats = compute_dataset_statistics(bridge_data_dir, "bridge_orig")
    episodes = [_bridge_orig_by_hand(e["action"], e["state"]) for e in _raw_bridge_episodes(bridge_data_dir)]
    actions = np.concatenate([a for a, _ in episodes])
    proprio = np.concatenate([p for _, p in episodes])
    assert stats["num_trajectories"] == 50  # train + val (25 each), all splits count
    assert stats["num_transitions"] == actions.shape[0] == 50 * 8  # 10 steps − step 0 − the last (relabel)
    for key, expected in _numpy_stats(actions).items():
        np.testing.assert_allclose(stats["action"][key], expected, rtol=1e-5, atol=1e-6, err_msg=f"action {key}")
    for key, expected in _numpy_stats(proprio).items():
        np.testing.assert_allclose(stats["proprio"][key], expected, rtol=1e-5, atol=1e-6, err_msg=f"proprio {key}")
    assert stats["action"]["mask"] == [True] * 6 + [False]
    assert set(np.unique(actions[:, 6])) <= {0.0, 1.0}
    assert sorted(stats) == ["action", "num_trajectories", "num_transitions", "proprio"]
    json.dumps(stats)  # plain JSON types only


def test_bridge_frames_load_through_bridge_orig(bridge_data_dir):
    from openvla.data import compute_dataset_statistics, make_dataset

    stats = {"bridge_orig": compute_dataset_statistics(bridge_data_dir, "bridge_orig")}
    ds = make_dataset(
        bridge_data_dir,
        "bridge_orig",
        statistics=stats,
        train=False,
        image_size=48,
        shuffle_buffer=0,
        image_augmentation=False,
        seed=0,
    )
    frames = list(ds.as_numpy_iterator())
    assert len(frames) == 25 * 8  # the train split
    frame = frames[0]
    assert frame["observation"]["image_primary"].shape == (1, 48, 48, 3)
    assert frame["observation"]["image_primary"].dtype == np.uint8
    assert frame["observation"]["image_primary"].std() > 5  # a real camera image, not padding
    assert frame["observation"]["proprio"].shape == (1, 7)
    actions = np.stack([f["action"][0, 0] for f in frames])
    assert actions.shape == (200, 7) and np.all(np.abs(actions[:, :6]) <= 1.0)
    assert set(np.unique(actions[:, 6])) <= {0.0, 1.0}
    assert {f["dataset_name"] for f in frames} == {b"bridge_orig"}
    assert all(f["task"]["language_instruction"] for f in frames)


def test_training_mode_repeats_and_augments(bridge_data_dir):
    from openvla.data import compute_dataset_statistics, make_dataset

    stats = {"bridge_orig": compute_dataset_statistics(bridge_data_dir, "bridge_orig")}
    kwargs = dict(statistics=stats, train=True, image_size=32, shuffle_buffer=50, seed=3, window_size=2, chunk=4)
    plain = list(make_dataset(bridge_data_dir, "bridge_orig", image_augmentation=False, **kwargs).take(250))
    again = list(make_dataset(bridge_data_dir, "bridge_orig", image_augmentation=False, **kwargs).take(250))
    assert len(plain) == 250  # > 200 frames of the split: it repeats
    np.testing.assert_array_equal(plain[7]["action"], again[7]["action"])  # same seed, same stream
    augmented = list(make_dataset(bridge_data_dir, "bridge_orig", image_augmentation=True, **kwargs).take(20))
    assert augmented[0]["observation"]["image_primary"].shape == (2, 32, 32, 3)
    assert augmented[0]["action"].shape == (2, 4, 7)
    diffs = [
        np.abs(a["observation"]["image_primary"].numpy().astype(int) - b["observation"]["image_primary"].numpy()).mean()
        for a, b in zip(plain[:20], augmented, strict=True)
    ]
    assert np.mean(diffs) > 1.0


def test_corrupt_tfrecord_is_reported_with_its_name_and_no_cache_written(bridge_data_dir, tmp_path):
    from openvla.data.statistics import cached_dataset_statistics

    copy = tmp_path / "data"
    shutil.copytree(bridge_data_dir / "bridge_dataset", copy / "bridge_dataset")
    shard = copy / "bridge_dataset" / "1.0.0" / "bridge_dataset-val.tfrecord-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        cached_dataset_statistics(copy, "bridge_orig", cache_dir=tmp_path / "cache")
    assert "bridge_dataset-val.tfrecord-00000-of-00001" in str(err.value)
    assert "corrupt" in str(err.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("call", ["stats", "loader"])
def test_unknown_dataset_name_suggests_the_close_one(bridge_data_dir, call):
    from openvla.data import compute_dataset_statistics, make_dataset

    with pytest.raises(ValueError, match="did you mean 'bridge_orig'"):
        if call == "stats":
            compute_dataset_statistics(bridge_data_dir, "bridge_orgi")
        else:
            make_dataset(
                bridge_data_dir,
                "bridge_orgi",
                statistics={},
                train=True,
                image_size=32,
                shuffle_buffer=10,
                image_augmentation=False,
                seed=0,
            )


def test_registered_dataset_missing_from_data_dir_names_where_it_looked(tmp_path):
    from openvla.data import compute_dataset_statistics

    with pytest.raises(DataError, match="no TFDS dataset found"):
        compute_dataset_statistics(tmp_path, "libero_10_no_noops")


def test_statistics_cache_hits_and_changes_with_the_transform(bridge_data_dir, tmp_path, monkeypatch):
    from openvla.data import registry, statistics

    first = statistics.cached_dataset_statistics(bridge_data_dir, "bridge_orig", tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(statistics, "compute_dataset_statistics", lambda *a: calls.append(a) or first)
    assert statistics.cached_dataset_statistics(bridge_data_dir, "bridge_orig", tmp_path) == first
    assert calls == []  # served from the cache
    key = statistics.statistics_hash(bridge_data_dir, "bridge_orig")
    config = registry.get_dataset_config("bridge_orig")
    monkeypatch.setitem(
        registry._DATASETS, "bridge_orig", registry.DatasetConfig(**{**config.__dict__, "standardize": lambda t: t})
    )
    assert statistics.statistics_hash(bridge_data_dir, "bridge_orig") != key
