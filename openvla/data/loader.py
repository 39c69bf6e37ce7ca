"""The training data pipeline: RLDS → standardized, normalized, chunked frames (DESIGN §6).

``make_dataset`` builds a ``tf.data.Dataset`` of frames for a mixture (or one dataset), each frame::

    {"observation": {"image_primary": uint8 [W, S, S, 3], "proprio": float32 [W, P], "pad_mask": bool [W],
                     "timestep": int32 [W], "pad_mask_dict": {...}},
     "task": {"language_instruction": bytes, ...},
     "action": float32 [W, K, A] (normalized), "action_pad_mask": bool [W, K] (True = clamped past the end),
     "dataset_name": bytes}

with W = window_size, K = chunk, S = image_size. Order (OpenVLA's): per dataset read → standardize → restructure →
normalize → episode transforms → (repeat) → flatten; then mixture sampling, one shuffle buffer of frames with
images still encoded, and the frame transforms (decode + resize, augmentation) in parallel.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openvla.data import traj_transforms as tt
from openvla.data.dlataset import DLataset
from openvla.data.errors import DataError
from openvla.data.image_ops import augment_image, decode_and_resize
from openvla.data.normalization import normalize_trajectory
from openvla.data.registry import DatasetConfig, find_builder_dir, get_dataset_config, get_mixture
from openvla.tf_import import import_tensorflow, import_tfds

log = logging.getLogger(__name__)

CAMERAS = ("primary", "secondary", "wrist")
_SEED_OFFSET: contextvars.ContextVar[int] = contextvars.ContextVar("openvla_data_seed_offset", default=0)


@contextlib.contextmanager
def seed_offset(offset: int) -> Iterator[None]:
    """Datasets made inside this block add ``offset`` to their seed (per rank / dataloader worker streams)."""
    token = _SEED_OFFSET.set(offset)
    try:
        yield
    finally:
        _SEED_OFFSET.reset(token)


def open_builder(data_dir: str | Path, name: str) -> Any:
    """The TFDS builder of a registered dataset under ``data_dir``."""
    directory = find_builder_dir(data_dir, name)
    tfds = import_tfds()
    try:
        return tfds.builder_from_directory(str(directory))
    except Exception as err:  # TFDS raises several types for a broken dataset_info.json / features.json
        raise DataError(f"{directory}: cannot open the TFDS dataset ({type(err).__name__}: {err})") from err


def resolve_split(builder: Any, split: str, train: bool | None = None) -> str:
    """``val`` falls back to the last 5% of ``train`` (and ``train`` to the first 95%) when there is no val split.

    Under 10 episodes or so, 5% rounds to no episode at all (TFDS then fails with "Instruction [] corresponds to no
    data"), so such a dataset holds out its last episode instead, and trains on the others: still disjoint.
    """
    splits = set(builder.info.splits.keys())
    if split == "all":
        return split
    no_val = "train" in splits and "val" not in splits
    if no_val and (split == "val" or (split == "train" and train)):
        held_out, kept = "train[95%:]", "train[:95%]"
        if builder.info.splits[held_out].num_examples == 0 and builder.info.splits["train"].num_examples > 1:
            held_out, kept = "train[-1:]", "train[:-1]"
        return held_out if split == "val" else kept
    if split in splits:
        return split
    raise DataError(f"{builder.data_dir}: no split {split!r} (available: {sorted(splits)})")


def restructure(config: DatasetConfig, name: str, cameras: Sequence[str] = ("primary",)):
    """A trajectory map: standardized raw trajectory → the standard layout (see the module docstring of
    ``traj_transforms``), keeping the image keys of ``cameras`` (a camera the dataset lacks becomes empty strings,
    decoded later as black images with ``pad_mask_dict`` False)."""
    unknown = set(cameras) - set(CAMERAS)
    if unknown:
        raise ValueError(f"load_camera_views: unknown camera(s) {sorted(unknown)}; expected some of {CAMERAS}")
    tf = import_tensorflow()

    def fn(traj: dict) -> dict:
        old_obs = traj["observation"]
        length = tf.shape(traj["action"])[0]
        obs: dict[str, Any] = {}
        for camera in cameras:
            key = config.image_obs_keys.get(camera)
            if key is None:
                obs[f"image_{camera}"] = tf.fill([length], "")
            elif key not in old_obs:
                raise DataError(f"dataset {name!r}: observation has no image key {key!r} (camera {camera})")
            else:
                obs[f"image_{camera}"] = old_obs[key]
        if config.state_obs_keys:
            parts = []
            for key in config.state_obs_keys:
                if key is None:
                    parts.append(tf.zeros([length, 1], tf.float32))
                else:
                    if key not in old_obs:
                        raise DataError(f"dataset {name!r}: observation has no state key {key!r}")
                    value = tf.cast(old_obs[key], tf.float32)
                    parts.append(value if value.shape.rank == 2 else value[:, None])
            obs["proprio"] = tf.concat(parts, axis=1)
        else:
            obs["proprio"] = tf.zeros_like(tf.cast(traj["action"], tf.float32))  # no proprio: zeros like the action
        obs["timestep"] = tf.range(length)
        instruction = traj.get(config.language_key)
        if instruction is None:
            instruction = tf.fill([length], "")
        return {
            "observation": obs,
            "task": {"language_instruction": instruction},
            "action": tf.cast(traj["action"], tf.float32),
            "dataset_name": tf.fill([length], name),
        }

    return fn


def standardized_trajectories(
    data_dir: str | Path,
    name: str,
    *,
    split: str = "all",
    train: bool = False,
    shuffle: bool = False,
    num_parallel_reads: int = 2,
    num_parallel_calls: int = 2,
    seed: int | None = None,
    cameras: Sequence[str] = ("primary",),
) -> DLataset:
    """Trajectories of one dataset after its standardization transform and ``restructure`` (not normalized)."""
    config = get_dataset_config(name)
    builder = open_builder(data_dir, name)
    ds = DLataset.from_rlds(
        builder, resolve_split(builder, split, train), shuffle=shuffle, num_parallel_reads=num_parallel_reads, seed=seed
    )
    ds = ds.traj_map(config.standardize, num_parallel_calls)
    ds = ds.traj_map(restructure(config, name, cameras), num_parallel_calls)
    return ds.filter(tt.has_steps)


def allocate_threads(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` threads across datasets proportionally to ``weights``, at least one each."""
    weights = np.asarray(weights, dtype=float)
    n = len(weights)
    if total <= n:
        return [1] * n
    out = np.ones(n, dtype=int)
    extra = total - n
    share = weights / weights.sum() * extra
    out += np.floor(share).astype(int)
    remainder = extra - int(np.floor(share).sum())
    for i in np.argsort(-(share - np.floor(share)))[:remainder]:
        out[i] += 1
    return out.tolist()


def _episode_pipeline(
    data_dir: str | Path,
    name: str,
    stats: Mapping[str, Any],
    *,
    train: bool,
    split: str,
    window_size: int,
    chunk: int,
    goal_relabeling: str | None,
    max_action: float | None,
    max_proprio: float | None,
    normalization: str,
    num_parallel_reads: int,
    num_parallel_calls: int,
    seed: int,
    cameras: Sequence[str],
    subsample_length: int | None,
    start_steps: int = 0,
    start_weight: int = 1,
) -> DLataset:
    ds = standardized_trajectories(
        data_dir,
        name,
        split=split,
        train=train,
        shuffle=train,
        num_parallel_reads=num_parallel_reads,
        num_parallel_calls=num_parallel_calls,
        seed=seed,
        cameras=cameras,
    )
    ds = ds.traj_map(lambda traj: normalize_trajectory(traj, stats, normalization), num_parallel_calls)
    # Episode transforms, DESIGN §6 order. Bounds filters look at the unnormalized data in OpenVLA; ours at the
    # normalized data, which is what a max of e.g. 1.0 means after BOUNDS_Q99 clipping anyway.
    ds = ds.filter(tt.has_instruction)
    if max_action is not None or max_proprio is not None:
        ds = ds.filter(lambda traj: tt.within_bounds(traj, max_action, max_proprio))
    ds = ds.traj_map(tt.add_pad_mask_dict, num_parallel_calls)
    if goal_relabeling == "uniform":
        ds = ds.traj_map(lambda traj: tt.uniform_goal_relabel(traj, seed), num_parallel_calls)
    elif goal_relabeling is not None:
        raise ValueError(f"goal_relabeling {goal_relabeling!r} unknown; expected None or 'uniform'")
    ds = ds.traj_map(lambda traj: tt.chunk_window(traj, window_size, chunk), num_parallel_calls)
    if train and subsample_length:
        ds = ds.traj_map(lambda traj: tt.subsample(traj, subsample_length, seed), num_parallel_calls)
    if train and start_steps and start_weight > 1:
        ds = ds.traj_map(lambda traj: tt.repeat_first_steps(traj, start_steps, start_weight), num_parallel_calls)
    if train:
        ds = ds.repeat()
    frames = ds.flatten(num_parallel_calls)
    frame_filter = get_dataset_config(name).frame_filter  # e.g. DROID's zero-action frames
    if frame_filter is not None:
        frames = frames.filter(lambda frame: frame_filter(frame, stats["action"]))
    return frames


def _frame_transform(image_size: int, augment: bool):
    tf = import_tensorflow()

    def decode(images):  # string [W] → uint8 [W, S, S, 3]
        return tf.map_fn(
            lambda x: decode_and_resize(x, image_size),
            images,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )

    def fn(frame: dict, seed) -> dict:
        for group in ("observation", "task"):
            for key in list(frame[group]):
                if key.startswith("image_"):
                    value = frame[group][key]
                    frame[group][key] = decode(value) if value.shape.rank == 1 else decode(value[None])[0]
                    if augment:  # one seed for every camera and history step of the frame
                        frame[group][key] = augment_image(frame[group][key], seed)
        return frame

    return fn


def make_dataset(
    data_dir: str | Path,
    mixture: str | Sequence[tuple[str, float]],
    *,
    statistics: Mapping[str, Any],
    train: bool,
    image_size: int,
    window_size: int = 1,
    chunk: int = 1,
    shuffle_buffer: int,
    image_augmentation: bool,
    seed: int,
    balance_weights: bool = True,
    split: str = "train",
    num_parallel_calls: int = 2,
    num_parallel_reads: int = 2,
    normalization: str = "bounds_q99",
    goal_relabeling: str | None = None,
    max_action: float | None = None,
    max_proprio: float | None = None,
    load_camera_views: Sequence[str] = ("primary",),
    subsample_length: int | None = None,
    skip_frames: int = 0,
    start_steps: int = 0,
    start_weight: int = 1,
):
    """Frames of a mixture (a registered mixture/dataset name or ``[(dataset, weight)]``) as ``tf.data.Dataset``.

    ``statistics`` is the whole statistics JSON ``{dataset_name: stats}``; every dataset is normalized with its own
    entry. Training (``train=True``) repeats forever and augments when ``image_augmentation``; otherwise the
    dataset is finite. ``split="train"`` of a dataset without a ``val`` split trains on the first 95% of ``train``
    (``split="val"`` is then the last 5%), as OpenVLA does. Seeds: ``seed`` plus the offset of ``seed_offset``
    (one per rank / worker), so every rank and worker reads its own stream.

    The stream is a pure function of its arguments (tf.data runs deterministically: parallel reads and maps keep
    their order, every random choice is seeded), so ``skip_frames=n`` yields exactly the frames an unskipped stream
    yields from its n-th on: this is how training resumes where it stopped (exact resume). The skipped frames are
    read, transformed per episode and pass through the shuffle buffer, but their images are never decoded: the
    skip sits before the frame transforms. Episode transforms with stateful randomness (``goal_relabeling``,
    ``subsample_length``) are not reproducible under parallel calls; exact resume needs them off.

    ``start_steps``/``start_weight`` (training only): each episode's first ``start_steps`` frames appear
    ``start_weight`` times per pass (``traj_transforms.repeat_first_steps``); the defaults 0/1 leave the stream as is.
    """
    if skip_frames < 0:
        raise ValueError(f"skip_frames must be ≥ 0, got {skip_frames}")
    tf = import_tensorflow()
    entries = get_mixture(mixture) if isinstance(mixture, str) else [(n, float(w)) for n, w in mixture]
    seed = int(seed) + _SEED_OFFSET.get()
    names = [n for n, _ in entries]
    missing = [n for n in names if n not in statistics]
    if missing:
        raise DataError(
            f"statistics have no entry for {missing} (available: {sorted(statistics)}); run the stats stage"
        )
    weights = np.array([w for _, w in entries], dtype=float)
    if balance_weights:
        weights = weights * np.array([statistics[n]["num_transitions"] for n in names], dtype=float)
    weights = weights / weights.sum()
    reads = allocate_threads(num_parallel_reads, weights)
    calls = allocate_threads(num_parallel_calls, weights)
    log.info(
        "Mixture %s: %s",
        mixture if isinstance(mixture, str) else "custom",
        ", ".join(f"{n} ({w:.3f})" for n, w in zip(names, weights, strict=True)),
    )

    datasets = [
        _episode_pipeline(
            data_dir,
            name,
            statistics[name],
            train=train,
            split=split,
            window_size=window_size,
            chunk=chunk,
            goal_relabeling=goal_relabeling,
            max_action=max_action,
            max_proprio=max_proprio,
            normalization=normalization,
            num_parallel_reads=reads[i],
            num_parallel_calls=calls[i],
            seed=seed + i,
            cameras=load_camera_views,
            subsample_length=subsample_length,
            start_steps=start_steps,
            start_weight=start_weight,
        ).dataset
        for i, name in enumerate(names)
    ]
    if len(datasets) == 1:
        frames = datasets[0]
    else:
        frames = tf.data.Dataset.sample_from_datasets(
            datasets, weights=weights.tolist(), seed=seed, stop_on_empty_dataset=train
        )
    if shuffle_buffer > 1:
        frames = frames.shuffle(shuffle_buffer, seed=seed)  # images still encoded: the buffer stays small
    augment = bool(train and image_augmentation)
    seeds = tf.data.Dataset.random(seed=seed).batch(2).map(lambda s: tf.cast(s % 2**31, tf.int32))
    frames = tf.data.Dataset.zip((frames, seeds))
    if skip_frames:  # before decoding: a skipped frame costs its read, not its image decode and augmentation
        frames = frames.skip(skip_frames)
    frames = frames.map(_frame_transform(image_size, augment), num_parallel_calls=max(1, num_parallel_calls))
    options = tf.data.Options()
    options.deterministic = True  # parallel stages keep their order: the stream depends on the seed only
    options.autotune.ram_budget = 1 << 30  # bound tf.data's autotuned buffers to 1 GiB
    return frames.with_options(options)
