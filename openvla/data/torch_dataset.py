"""The torch side of the data pipeline: an ``IterableDataset`` over a ``tf.data`` pipeline (DESIGN §6).

Each rank and each DataLoader worker builds its own ``tf.data`` pipeline inside ``__iter__`` with a distinct seed
offset (``rank * num_workers + worker_id``), so infinite training streams differ between ranks/workers; a finite
(evaluation) pipeline is sharded instead, so every frame is seen once overall. ``num_workers=0`` is the safe default:
TensorFlow already reads and transforms with its own threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from openvla.data.loader import seed_offset
from openvla.tf_import import import_tensorflow


class RLDSIterableDataset(IterableDataset):
    """Yields ``transform(frame)`` for every frame of ``make_tf_dataset()`` (a nested dict of numpy arrays).

    ``make_tf_dataset`` is called lazily in each worker, inside ``openvla.data.seed_offset(...)``, so
    ``make_dataset(..., seed=s)`` there uses seed ``s + rank * num_workers + worker_id``.
    """

    def __init__(
        self,
        make_tf_dataset: Callable[[], Any],
        transform: Callable[[dict], dict],
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.make_tf_dataset = make_tf_dataset
        self.transform = transform
        self.rank = rank
        self.world_size = world_size

    def _stream_index(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[dict]:
        tf = import_tensorflow()
        index, total = self._stream_index()
        with seed_offset(index):
            dataset = self.make_tf_dataset()
        finite = int(dataset.cardinality()) != int(tf.data.INFINITE_CARDINALITY)
        if finite and total > 1:
            dataset = dataset.shard(total, index)
        for element in dataset.as_numpy_iterator():
            yield self.transform(element)  # nested dict of numpy arrays; strings as bytes


def numpy_collate_example(frames: list[dict]) -> dict:
    """Stack a list of frames key by key (a minimal collate for tests and benches; training uses its own)."""
    out: dict[str, Any] = {}
    for key, value in frames[0].items():
        if isinstance(value, dict):
            out[key] = numpy_collate_example([f[key] for f in frames])
        elif isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(np.stack([f[key] for f in frames]))
        else:
            out[key] = [f[key] for f in frames]
    return out
