"""Dataset and mixture registry: name → ``DatasetConfig`` and name → ``[(dataset, weight)]``.

The shipped entries live in ``openvla/data/oxe_configs.py`` and ``oxe_mixtures.py`` (data tables; the transforms
they name are in ``oxe_transforms.py`` / ``standardize.py``, ``DatasetConfig`` in ``dataset_config.py``); this module
holds the logic and imports those one way (none of them imports the registry). Users add
their own robot data with ``register_dataset`` / ``register_mixture`` (see README "Add your own robot dataset"), in
Python or in a registry file that stages import with ``load_registry_file`` (params ``data.registry_file``).
"""

from __future__ import annotations

import difflib
import logging
import runpy
from collections.abc import Sequence
from pathlib import Path

from openvla.data import oxe_configs, oxe_mixtures
from openvla.data.dataset_config import ACTION_MASKS, DatasetConfig, TrajectoryTransform
from openvla.data.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "ACTION_MASKS",
    "DatasetConfig",
    "TrajectoryTransform",
    "dataset_names",
    "find_builder_dir",
    "get_dataset_config",
    "get_mixture",
    "load_registry_file",
    "mixture_names",
    "register_dataset",
    "register_mixture",
]

_DATASETS: dict[str, DatasetConfig] = {}
_MIXTURES: dict[str, list[tuple[str, float]]] = {}
_BUILTINS_LOADED = False
_LOADED_FILES: set[Path] = set()  # registry files already run in this process


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for name, config in oxe_configs.DATASETS.items():
            _DATASETS.setdefault(name, config)
        for name, entries in oxe_mixtures.MIXTURES.items():
            _MIXTURES.setdefault(name, list(entries))


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"; known: {', '.join(sorted(known))}"


def register_dataset(name: str, config: DatasetConfig, *, overwrite: bool = False) -> None:
    """Add a dataset to the registry (``overwrite=True`` replaces an existing entry)."""
    _ensure_builtins()
    if not isinstance(config, DatasetConfig):
        raise TypeError(f"register_dataset({name!r}): expected a DatasetConfig, got {type(config).__name__}")
    if name in _DATASETS and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
    _DATASETS[name] = config


def register_mixture(name: str, entries: Sequence[tuple[str, float]], *, overwrite: bool = False) -> None:
    """Add a mixture ``name → [(dataset_name, weight), ...]``; every dataset must already be registered."""
    _ensure_builtins()
    if name in _MIXTURES and not overwrite:
        raise ValueError(f"mixture {name!r} is already registered; pass overwrite=True to replace it")
    if not entries:
        raise ValueError(f"mixture {name!r}: needs at least one (dataset, weight) entry")
    checked = []
    for dataset, weight in entries:
        get_dataset_config(dataset)
        if not weight > 0:
            raise ValueError(f"mixture {name!r}: weight of {dataset!r} must be > 0, got {weight}")
        checked.append((dataset, float(weight)))
    _MIXTURES[name] = checked


def get_dataset_config(name: str) -> DatasetConfig:
    """The registered config of ``name``; an unknown name raises ``DataError`` with a did-you-mean hint."""
    _ensure_builtins()
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}{_did_you_mean(name, list(_DATASETS))}")
    return _DATASETS[name]


def get_mixture(name: str) -> list[tuple[str, float]]:
    """``[(dataset, weight)]`` of a mixture; a single registered dataset name is a mixture of one."""
    _ensure_builtins()
    if name in _MIXTURES:
        return list(_MIXTURES[name])
    if name in _DATASETS:
        return [(name, 1.0)]
    known = list(_MIXTURES) + list(_DATASETS)
    raise DataError(f"unknown mixture or dataset {name!r}{_did_you_mean(name, known)}")


def dataset_names() -> list[str]:
    _ensure_builtins()
    return sorted(_DATASETS)


def mixture_names() -> list[str]:
    _ensure_builtins()
    return sorted(_MIXTURES)


def load_registry_file(path: str | Path) -> None:
    """Run a Python file that calls ``register_dataset`` / ``register_mixture`` (params ``data.registry_file``).

    A file runs once per process: the stage and the library it calls may both ask for it (one registry load).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: registry file not found (params data.registry_file)")
    _ensure_builtins()
    if path.resolve() in _LOADED_FILES:
        return
    log.info("Loading dataset registrations from %s", path)
    try:
        runpy.run_path(str(path), run_name="openvla_registry")
    except Exception as err:
        raise DataError(
            f"{path}: the registry file (params data.registry_file) failed: {type(err).__name__}: {err}"
        ) from err
    _LOADED_FILES.add(path.resolve())


def find_builder_dir(data_dir: str | Path, name: str) -> Path:
    """``<data_dir>/<builder>/<version>/`` of a registered dataset (highest version with a dataset_info.json)."""
    config = get_dataset_config(name)
    data_dir = Path(data_dir)
    candidates = list(config.builder_names) or [name]
    for builder in candidates:
        root = data_dir / builder
        if not root.is_dir():
            continue
        versions = [p for p in root.iterdir() if p.is_dir() and (p / "dataset_info.json").is_file()]
        if versions:
            return max(versions, key=lambda p: _version_key(p.name))
    looked = ", ".join(str(data_dir / b) for b in candidates)
    raise DataError(f"dataset {name!r}: no TFDS dataset found (looked for <version>/dataset_info.json in {looked})")


def _version_key(version: str) -> tuple:
    parts = []
    for part in version.split("."):
        parts.append((0, int(part)) if part.isdigit() else (1, part))
    return tuple(parts)
