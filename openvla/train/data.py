"""Loader glue: RLDS frames (``openvla.data.make_dataset``) → VLA batches, one stream per rank.

``make_dataset`` (tf.data) → ``RLDSIterableDataset`` (rank r adds r to the shuffle/augmentation seed) with the
``VLABatchTransform`` (prompt, tokens, labels, pixel values) → ``DataLoader`` with the right-padding collator.
tf.data reads and transforms with its own threads, so the DataLoader uses no worker processes.

Resuming: a tf.data stream cannot be fast-forwarded cheaply, so a run resumed at step s draws a fresh stream
seeded with (seed, s) instead of replaying frames it already used; what the run has seen so far is recorded in the
checkpoint's data state.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from openvla.config import DataConfig
from openvla.train.distributed import DistInfo

log = logging.getLogger(__name__)

RESUME_SEED_STRIDE = 100_003  # seed of a stream resumed at step s: seed + s * stride (+ rank inside the dataset)


def per_rank_batch_size(global_batch: int, info: DistInfo) -> int:
    if global_batch % info.world_size:
        raise ValueError(f"batch_size {global_batch} (global) is not divisible by {info.world_size} processes; "
                         "change the stage's batch_size or nproc")  # fmt: skip
    return global_batch // info.world_size


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
    start_step: int = 0,
) -> DataLoader:
    """An endless DataLoader of this rank's training batches (``batch_size`` = per-rank micro-batch)."""
    from openvla.data import RLDSIterableDataset, make_dataset

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
        seed=seed + start_step * RESUME_SEED_STRIDE,
        balance_weights=data_cfg.balance_weights,
        num_parallel_calls=data_cfg.num_parallel_calls,
        num_parallel_reads=data_cfg.num_parallel_reads,
    )
    dataset = RLDSIterableDataset(make_tf_dataset, transform, rank=info.rank, world_size=info.world_size)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collator, num_workers=0)


def mixture_datasets(mixture: str) -> list[str]:
    """Names of the datasets of a registered mixture (or the single dataset ``mixture`` names)."""
    from openvla.data import get_mixture

    return [name for name, _ in get_mixture(mixture)]
