"""openvla.data: raw episodes → RLDS, the dataset registry, statistics and the tf.data training pipeline.

Importing this package is light; the public names below load their (TensorFlow) modules on first use::

    from openvla.data import compute_dataset_statistics, make_dataset, register_dataset, DatasetConfig
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataError": "openvla.data.errors",
    "DatasetConfig": "openvla.data.registry",
    "register_dataset": "openvla.data.registry",
    "register_mixture": "openvla.data.registry",
    "get_dataset_config": "openvla.data.registry",
    "get_mixture": "openvla.data.registry",
    "load_registry_file": "openvla.data.registry",
    "compute_dataset_statistics": "openvla.data.statistics",
    "cached_dataset_statistics": "openvla.data.statistics",
    "make_dataset": "openvla.data.loader",
    "seed_offset": "openvla.data.loader",
    "convert_dataset": "openvla.data.convert",
    "RLDSIterableDataset": "openvla.data.torch_dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'openvla.data' has no attribute {name!r}")
