"""Unit checks of the data transforms against their formulas (normalization, chunking, gripper rules, images),
the registry's error messages and the torch IterableDataset's per-worker seeds."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tf():
    from openvla.tf_import import import_tensorflow

    return import_tensorflow()


STATS = {
    "mean": [0.1, -0.2, 0.0, 0.5],
    "std": [0.5, 0.1, 1.0, 0.0],
    "min": [-1.0, -0.5, 2.0, 0.0],
    "max": [1.0, 0.3, 2.0, 1.0],
    "q01": [-0.9, -0.4, 2.0, 0.0],
    "q99": [0.8, 0.2, 2.0, 1.0],
    "mask": [True, True, True, False],
}


@pytest.mark.parametrize("kind", ["bounds_q99", "bounds", "normal"])
def test_normalization_matches_the_design_formula(tf, kind):
    from openvla.data.normalization import normalize_tf

    x = np.random.default_rng(0).uniform(-2, 3, size=(50, 4)).astype(np.float32)
    got = normalize_tf(tf.constant(x), STATS, kind).numpy()
    s = {k: np.asarray(v) for k, v in STATS.items()}
    mask = s["mask"]
    if kind == "normal":
        expected = np.where(mask, (x - s["mean"]) / (s["std"] + 1e-8), x)
    else:
        low, high = (s["q01"], s["q99"]) if kind == "bounds_q99" else (s["min"], s["max"])
        expected = np.where(mask, np.clip(2 * (x - low) / (high - low + 1e-8) - 1, -1, 1), x)
        expected = np.where(s["min"] == s["max"], 0.0, expected)  # dim 2 is constant → 0
        assert np.all(got[:, 2] == 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(got[:, 3], x[:, 3])  # masked-out gripper unchanged


def test_chunking_clamps_indices_and_marks_padding(tf):
    from openvla.data.traj_transforms import chunk_window

    T = 5
    traj = {
        "observation": {"proprio": tf.reshape(tf.range(T, dtype=tf.float32), [T, 1])},
        "action": tf.reshape(tf.range(T, dtype=tf.float32), [T, 1]) * 10,
    }
    out = chunk_window(traj, window_size=2, chunk=3)
    assert out["observation"]["proprio"].shape == (T, 2, 1)
    np.testing.assert_array_equal(out["observation"]["proprio"][:, :, 0], [[0, 0], [0, 1], [1, 2], [2, 3], [3, 4]])
    np.testing.assert_array_equal(out["observation"]["pad_mask"], [[False, True]] + [[True, True]] * 4)
    # action[t, w, c] = step clamp(t − 1 + w + c): the last window step of t=4 is 4, 4, 4 (two clamped)
    np.testing.assert_array_equal(out["action"][4, 1, :, 0], [40, 40, 40])
    np.testing.assert_array_equal(out["action_pad_mask"][4, 1], [False, True, True])
    np.testing.assert_array_equal(out["action"][1, 1, :, 0], [10, 20, 30])
    np.testing.assert_array_equal(out["action_pad_mask"][1], [[False, False, False], [False, False, False]])


def test_bridge_gripper_binarization_takes_the_next_settled_value(tf):
    from openvla.data.standardize import binarize_gripper_actions

    raw = np.array([1.0, 0.99, 0.5, 0.3, 0.01, 0.0, 0.6, 0.97, 0.4], np.float32)
    got = binarize_gripper_actions(tf.constant(raw)).numpy()
    np.testing.assert_array_equal(
        got, np.array([1, 1, 0, 0, 0, 0, 1, 1, 0.4], np.float32)
    )  # trailing in-between keeps its raw value


def test_libero_gripper_becomes_one_when_open(tf):
    from openvla.data.standardize import libero_transform

    action = np.zeros((3, 7), np.float32)
    action[:, 6] = [-1.0, 1.0, 0.3]
    traj = {"action": tf.constant(action), "observation": {"state": tf.zeros([3, 8])}}
    out = libero_transform(traj)
    np.testing.assert_allclose(out["action"][:, 6].numpy(), [1.0, 0.0, 0.7], atol=1e-7)
    assert out["observation"]["gripper_state"].shape == (3, 2)


def test_rt1_relative_gripper_becomes_absolute(tf):
    from openvla.data.standardize import relative_to_absolute_gripper

    got = relative_to_absolute_gripper(tf.constant([0.0, 0.0, 1.0, 0.0, -1.0, 0.0])).numpy()
    np.testing.assert_array_equal(got, [1, 1, 0, 0, 1, 1])  # open until "close", closed until "open"


def test_resize_image_is_lanczos3_antialiased_rounded(tf):
    from openvla.data.image_ops import resize_image

    image = np.random.default_rng(1).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    got = resize_image(image, 16)
    ref = tf.image.resize(image.astype(np.float32), (16, 16), method="lanczos3", antialias=True).numpy()
    np.testing.assert_array_equal(got, np.clip(np.round(ref), 0, 255).astype(np.uint8))
    assert got.dtype == np.uint8 and got.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="uint8"):
        resize_image(image.astype(np.float32), 16)


def test_augmentation_same_seed_same_result_across_cameras(tf):
    from openvla.data.image_ops import augment_image

    image = np.random.default_rng(2).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    a = augment_image(tf.constant(image), tf.constant([5, 9])).numpy()
    b = augment_image(tf.constant(image), tf.constant([5, 9])).numpy()
    c = augment_image(tf.constant(image), tf.constant([6, 9])).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    stacked = augment_image(tf.constant(np.stack([image, image])), tf.constant([5, 9])).numpy()
    np.testing.assert_array_equal(stacked[0], a)
    np.testing.assert_array_equal(stacked[1], a)


def test_registry_did_you_mean_and_mixtures():
    from openvla.data import get_mixture, registry
    from openvla.data.errors import DataError

    with pytest.raises(DataError, match="did you mean 'libero_10_no_noops'"):
        registry.get_dataset_config("libero_10_no_noop")
    with pytest.raises(DataError, match="unknown mixture or dataset 'libero_spatail'"):
        get_mixture("libero_spatail")
    assert get_mixture("bridge_orig") == [("bridge_orig", 1.0)]
    assert get_mixture("libero_4_task_suites")[0] == ("libero_spatial_no_noops", 1.0)
    assert registry.get_dataset_config("libero_embedded") is registry.get_dataset_config("libero_spatial_no_noops")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_dataset("bridge_orig", registry.get_dataset_config("bridge_orig"))
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        registry.register_mixture("bad_mix", [("nope", 1.0)])


def test_allocate_threads_gives_each_dataset_one_and_splits_the_rest_by_weight():
    from openvla.data.loader import allocate_threads

    assert allocate_threads(2, [0.9, 0.1, 0.5]) == [1, 1, 1]
    assert allocate_threads(10, [3.0, 1.0]) == [7, 3]
    assert sum(allocate_threads(7, [0.2, 0.3, 0.5])) == 7


def test_torch_iterable_dataset_gives_each_rank_its_own_seed_and_shards_finite_data(tf):
    from openvla.data.loader import _SEED_OFFSET
    from openvla.data.torch_dataset import RLDSIterableDataset

    seen = []

    def make_infinite():
        offset = _SEED_OFFSET.get()
        seen.append(offset)
        return tf.data.Dataset.from_tensors({"x": tf.constant(offset)}).repeat()

    for rank in range(2):
        ds = RLDSIterableDataset(make_infinite, lambda f: f, rank=rank, world_size=2)
        assert int(next(iter(ds))["x"]) == rank
    assert seen == [0, 1]

    def make_finite():
        return tf.data.Dataset.range(10).map(lambda i: {"i": i})

    shards = [[int(f["i"]) for f in RLDSIterableDataset(make_finite, lambda f: f, r, 2)] for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(10)) and shards[0] == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="rank"):
        RLDSIterableDataset(make_finite, lambda f: f, rank=2, world_size=2)


def test_subsample_keeps_ordered_random_steps_of_long_episodes(tf):
    from openvla.data.traj_transforms import subsample

    traj = {"action": tf.reshape(tf.range(10, dtype=tf.float32), [10, 1])}
    kept = subsample(traj, 4, seed=1)["action"].numpy()[:, 0]
    assert len(kept) == 4 and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(subsample(traj, 20)["action"].numpy()[:, 0], np.arange(10))


def test_repeat_first_steps_repeats_an_episodes_opening_in_place(tf):
    from openvla.data.traj_transforms import repeat_first_steps

    traj = {
        "action": tf.reshape(tf.range(5, dtype=tf.float32), [5, 1]),
        "observation": {"timestep": tf.range(5)},
        "task": {"language_instruction": tf.constant([b"go"] * 5)},
    }
    out = repeat_first_steps(traj, steps=2, weight=3)
    np.testing.assert_array_equal(out["action"].numpy()[:, 0], [0, 0, 0, 1, 1, 1, 2, 3, 4])
    np.testing.assert_array_equal(out["observation"]["timestep"].numpy(), [0, 0, 0, 1, 1, 1, 2, 3, 4])
    assert out["task"]["language_instruction"].shape == (9,)
    # an episode shorter than `steps` repeats all of it; weight 1 is the identity
    np.testing.assert_array_equal(repeat_first_steps(traj, 9, 2)["action"].numpy()[:, 0], np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(repeat_first_steps(traj, 3, 1)["action"].numpy()[:, 0], np.arange(5))
    with pytest.raises(ValueError, match="weight"):
        repeat_first_steps(traj, 2, 0)


@pytest.mark.parametrize(
    ("episodes", "val", "train"),
    [(40, "train[95%:]", "train[:95%]"), (4, "train[-1:]", "train[:-1]"), (1, "train[95%:]", "train[:95%]")],
)
def test_held_out_split_is_never_empty_and_stays_disjoint(tf, episodes, val, train, tmp_path):
    """5% of a handful of episodes rounds to none: such a dataset holds out its last episode instead."""
    from types import SimpleNamespace

    import tensorflow_datasets as tfds

    from openvla.data.loader import resolve_split

    template = tfds.core.ShardedFileTemplate(
        data_dir=tmp_path, dataset_name="x", split="train", filetype_suffix="tfrecord"
    )
    info = tfds.core.SplitInfo(name="train", shard_lengths=[episodes], num_bytes=0, filename_template=template)
    builder = SimpleNamespace(info=SimpleNamespace(splits=tfds.core.SplitDict([info])), data_dir="/data/x")
    assert resolve_split(builder, "val") == val
    assert resolve_split(builder, "train", train=True) == train
    assert resolve_split(builder, "train", train=False) == "train"
    held, kept = builder.info.splits[val].num_examples, builder.info.splits[train].num_examples
    if episodes > 1:
        assert held >= 1 and held + kept == episodes
