"""Dataset and mixture registry: name → ``DatasetConfig`` and name → ``[(dataset, weight)]``.

The shipped entries live in ``openvla/data/oxe_configs.py`` (a data table); this module holds the logic. Users add
their own robot data with ``register_dataset`` / ``register_mixture`` (see README "Add your own robot dataset"), in
Python or in a registry file that stages import with ``load_registry_file`` (params ``data.registry_file``).
"""

from __future__ import annotations

import difflib
import logging
import runpy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvla.data.errors import DataError

log = logging.getLogger(__name__)

# Action encodings (DESIGN §6) → the action normalization mask: deltas are normalized, the gripper is not.
ACTION_MASKS: dict[str, tuple[bool, ...]] = {
    "EEF_POS": (True,) * 6 + (False,),  # xyz + rpy deltas, gripper in [0, 1] (1 = open)
    "JOINT_POS": (True,) * 7 + (False,),  # 7 joint deltas + gripper
    "EEF_R6": (True,) * 9 + (False,),  # xyz + 6-D rotation + gripper
}

TrajectoryTransform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class DatasetConfig:
    """How to read one RLDS dataset into the standard trajectory layout.

    ``standardize`` maps a raw trajectory (every RLDS step key, each with a leading time axis T, plus
    ``traj_metadata``) to one whose ``action`` is the model's action (7-D EEF_POS for every shipped dataset,
    gripper in [0, 1] with 1 = open) and whose ``observation`` holds the keys named below.
    """

    image_obs_keys: Mapping[str, str | None]  # camera role (primary / secondary / wrist) → RLDS observation key
    state_obs_keys: Sequence[str | None]  # concatenated into proprio (after standardize); None = one zero dim
    standardize: TrajectoryTransform  # raw trajectory → standard trajectory (TF ops)
    action_encoding: str = "EEF_POS"  # see ACTION_MASKS; decides which action dims get normalized
    state_encoding: str = "POS_EULER"  # documentation of the proprio layout (POS_EULER, POS_QUAT, JOINT, NONE)
    builder_names: Sequence[str] = ()  # TFDS directory names to look for under data_dir; empty = the dataset name
    language_key: str = "language_instruction"  # step key holding the instruction
    action_mask: Sequence[bool] | None = None  # overrides the mask derived from action_encoding
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form notes (e.g. control frequency)

    def __post_init__(self) -> None:
        unknown = set(self.image_obs_keys) - {"primary", "secondary", "wrist"}
        if unknown:
            raise ValueError(f"image_obs_keys: unknown camera role(s) {sorted(unknown)}; use primary/secondary/wrist")
        if self.action_mask is None and self.action_encoding not in ACTION_MASKS:
            raise ValueError(
                f"action_encoding {self.action_encoding!r} unknown (known: {sorted(ACTION_MASKS)}); "
                "or pass action_mask explicitly"
            )

    @property
    def normalization_mask(self) -> list[bool]:
        """Action dims normalized by BOUNDS_Q99 (False for the gripper)."""
        return list(self.action_mask if self.action_mask is not None else ACTION_MASKS[self.action_encoding])


_DATASETS: dict[str, DatasetConfig] = {}
_MIXTURES: dict[str, list[tuple[str, float]]] = {}
_BUILTINS_LOADED = False


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from openvla.data import oxe_configs

        for name, config in oxe_configs.DATASETS.items():
            _DATASETS.setdefault(name, config)
        for name, entries in oxe_configs.MIXTURES.items():
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

    Loading the same file twice is harmless when it registers with ``overwrite=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: registry file not found (params data.registry_file)")
    _ensure_builtins()
    log.info("Loading dataset registrations from %s", path)
    runpy.run_path(str(path), run_name="openvla_registry")


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
