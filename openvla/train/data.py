"""Loader glue: RLDS frames (``openvla.data.make_dataset``) → VLA batches, one stream per rank.

``make_dataset`` (tf.data) → ``RLDSIterableDataset`` (rank r adds r to the shuffle/augmentation seed) with the
``VLABatchTransform`` (prompt, tokens, labels, pixel values) → ``DataLoader`` with the right-padding collator.
tf.data reads and transforms with its own threads, so the DataLoader uses no worker processes.

Exact resume: each rank's stream is a pure function of (seed, rank), so the data position is one number per rank,
the frames that rank has consumed; it is stored in every checkpoint (``frames_per_rank`` of the data state). A run
resumed there rebuilds the same stream and skips that many frames before image decoding
(``make_dataset(skip_frames=…)``), and so trains on exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from openvla.config import DataConfig
from openvla.train.distributed import DistInfo

log = logging.getLogger(__name__)


def per_rank_batch_size(global_batch: int, info: DistInfo) -> int:
    if global_batch % info.world_size:
        raise ValueError(f"batch_size {global_batch} (global) is not divisible by {info.world_size} processes; "
                         "change the stage's batch_size or nproc")  # fmt: skip
    return global_batch // info.world_size


def resume_skip(data_state: Mapping[str, Any], info: DistInfo, frames_per_step: int = 0) -> int:
    """Frames this rank's stream must skip to continue where the checkpointed run stopped.

    A checkpoint of another world size (another process count) cannot continue the same per-rank streams; the run
    then goes on with fresh streams (skipping what an equal share would have consumed) and says so. A checkpoint
    written before the data position was recorded has only its step: ``step × frames_per_step`` (this rank's
    micro-batch × gradient accumulation) is where its stream stood, unless it had itself been resumed.
    """
    frames = data_state.get("frames_per_rank")
    if not frames:
        return int(data_state.get("step", 0)) * frames_per_step
    if len(frames) != info.world_size:
        share = sum(frames) // info.world_size
        log.warning("the checkpoint was written by %d processes, this run has %d: the data streams differ from the "
                    "uninterrupted run's (not an exact resume)", len(frames), info.world_size)  # fmt: skip
        return share
    return int(frames[info.rank])


def quiet_tensorflow_pools_for_cpu_training() -> None:
    """One thread in each of TensorFlow's op pools, so the tf.data pipeline does not contend with torch's threads.

    When training runs on the CPU, torch's threads and TensorFlow's share the same cores. TensorFlow's default
    pools have one thread per core, and those threads spin while torch computes. Limiting each pool to one thread
    made the embedded pretrain 10% faster (300 steps: 101.5 and 104.6 s against 113.4 and 118.7 s, 2-core CPU),
    with the same parameters bit for bit: tf.data's parallel map keeps its order whatever the thread count. GPU
    training leaves the pools alone, since there the pipeline has the cores to itself.
    """
    from openvla.tf_import import limit_tensorflow_threads

    if not limit_tensorflow_threads(1):
        log.warning("TensorFlow's runtime had already started: its thread pools keep their default size")


def make_vla_loader(
    *,
    data_dir: str | Path,
    mixture: str,
    statistics: Mapping[str, Any],
    data_cfg: DataConfig,
    image_size: int,
    image_augmentation: bool,
    transform: Callable[[dict], dict],
    collator: Callable[[list[dict]], dict],
    batch_size: int,
    seed: int,
    info: DistInfo,
    skip_frames: int = 0,
) -> DataLoader:
    """An endless DataLoader of this rank's training batches (``batch_size`` = per-rank micro-batch), starting
    ``skip_frames`` frames into this rank's stream (see ``resume_skip``)."""
    from openvla.data import RLDSIterableDataset, make_dataset

    if info.device.type == "cpu":
        quiet_tensorflow_pools_for_cpu_training()
    make_tf_dataset = functools.partial(
        make_dataset,
        str(data_dir),
        mixture,
        statistics=dict(statistics),
        train=True,
        image_size=image_size,
        window_size=data_cfg.window_size,
        chunk=data_cfg.chunk,
        shuffle_buffer=data_cfg.shuffle_buffer,
        image_augmentation=image_augmentation,
        seed=seed,
        balance_weights=data_cfg.balance_weights,
        num_parallel_calls=data_cfg.num_parallel_calls,
        num_parallel_reads=data_cfg.num_parallel_reads,
        skip_frames=skip_frames,
        start_steps=data_cfg.start_steps,
        start_weight=data_cfg.start_weight,
        load_camera_views=tuple(getattr(transform, "cameras", data_cfg.cameras)),  # what the model reads
    )
    if skip_frames:
        log.info("data stream of rank %d resumes after %d frames", info.rank, skip_frames)
    dataset = RLDSIterableDataset(make_tf_dataset, transform, rank=info.rank, world_size=info.world_size)
    # Its own generator: the DataLoader draws a base seed when iterated, which must not consume the global torch RNG
    # (restored from the checkpoint on resume, so a resumed run and the uninterrupted one draw the same numbers).
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collator, num_workers=0,
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip


def load_registry(data_cfg: DataConfig) -> None:
    """Run ``data.registry_file`` (the user's own datasets and mixtures) in this process, when it names one."""
    if data_cfg.registry_file:
        from openvla.data import load_registry_file

        load_registry_file(data_cfg.registry_file)


def mixture_datasets(mixture: str, key: str = "data.mixture") -> list[str]:
    """Names of the datasets of a registered mixture (or the single dataset ``mixture`` names); an unknown name is
    reported with the params key that holds it (``key``)."""
    from openvla.data import DataError, get_mixture

    try:
        entries = get_mixture(mixture)
    except DataError as err:
        raise DataError(f"params {key}: {err} (register your own in the file data.registry_file names)") from None
    return [name for name, _ in entries]
