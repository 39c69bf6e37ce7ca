"""Readers for raw episodes, with validation that names the file and the problem.

Three formats (``convert.input_format``):

* ``libero_hdf5`` — LIBERO's demo files (``<task>_demo.hdf5``; layout in the team contract): one episode per
  ``data/demo_<i>``. OpenVLA's conversion rules apply: failed demos are dropped (attr ``success`` False, else last
  ``dones`` == 0) and, with ``drop_noops``, no-op steps are dropped (arm-action norm < 1e-4 and gripper equal to the
  previous kept step's gripper; the first step only needs the norm test).
* ``npz`` — one ``episode_*.npz`` per episode for your own robot (README "Add your own robot dataset"): ``image``
  (T,H,W,3) uint8, ``state`` (T,S), ``action`` (T,A), ``language_instruction`` (a string); optional
  ``wrist_image`` (T,H,W,3) uint8, ``joint_state`` (T,J), ``reward`` (T,), ``discount`` (T,), ``success`` (bool).
* ``lerobot`` — a local LeRobot dataset directory (format v3.0), read by ``openvla.data.lerobot_format`` with the keys
  ``convert.lerobot_cameras`` / ``lerobot_state`` / ``lerobot_action`` name.

Reading is two-phase: ``index_episodes`` checks everything small (actions, instructions, shapes) for every episode
before anything is written; ``load_episode`` then reads the images of one episode at a time (bounded memory).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openvla.data.errors import DataError

if TYPE_CHECKING:
    from openvla.data.lerobot_format import LeRobotKeys

log = logging.getLogger(__name__)

NOOP_THRESHOLD = 1e-4  # OpenVLA's no-op rule: ||action[:6]|| below this (and gripper unchanged) is a no-op
LIBERO_OBS = {  # HDF5 dataset under demo_<i>/obs → (RLDS field, trailing shape or None for images)
    "agentview_rgb": "image",
    "eye_in_hand_rgb": "wrist_image",
    "ee_states": "ee_states",
    "gripper_states": "gripper_states",
    "joint_states": "joint_state",
}


@dataclass
class EpisodeRef:
    """One valid episode found by ``index_episodes``: where it is and which steps to keep."""

    path: Path  # the raw file
    key: str  # HDF5 group ("data/demo_3") or "" for npz
    source: str  # human/metadata name: "<file>/<key>" relative to the raw dir
    instruction: str
    keep: np.ndarray  # indices of kept steps
    num_steps: int  # steps before no-op removal


@dataclass
class Episode:
    """An episode's arrays, ready for the RLDS writer (images uint8 (T,H,W,3), vectors float32 (T,D))."""

    source: str
    instruction: str
    image: np.ndarray
    state: np.ndarray
    action: np.ndarray
    wrist_image: np.ndarray | None = None
    joint_state: np.ndarray | None = None
    reward: np.ndarray | None = None
    discount: np.ndarray | None = None
    secondary_image: np.ndarray | None = None  # a second third-person camera (the loader's "secondary" role)


@dataclass
class IndexReport:
    """What ``index_episodes`` found: valid episodes and the counts for ``metrics/convert.json``."""

    episodes: list[EpisodeRef] = field(default_factory=list)
    episodes_total: int = 0
    episodes_dropped_failed: int = 0
    episodes_dropped_empty: int = 0
    steps_total: int = 0
    noops_dropped: int = 0


def noop_keep_indices(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """Indices of the steps OpenVLA's LIBERO rule keeps (see the module docstring)."""
    keep: list[int] = []
    for t, action in enumerate(actions):
        small = float(np.linalg.norm(action[:-1])) < threshold
        if small and (not keep or action[-1] == actions[keep[-1]][-1]):
            continue
        keep.append(t)
    return np.asarray(keep, dtype=np.int64)


def check_actions(actions: np.ndarray, action_dim: int, where: str) -> np.ndarray:
    """(T, action_dim) finite float actions, or a DataError naming ``where``."""
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] != action_dim:
        raise DataError(f"{where}: actions has shape {actions.shape}, expected (T, {action_dim}) (convert.action_dim)")
    if actions.shape[0] == 0:
        raise DataError(f"{where}: episode has no steps")
    if not np.issubdtype(actions.dtype, np.number):
        raise DataError(f"{where}: actions has dtype {actions.dtype}, expected a float array")
    bad = np.argwhere(~np.isfinite(actions))
    if len(bad):
        steps = sorted({int(i) for i in bad[:, 0]})
        raise DataError(f"{where}: actions contain NaN or inf at steps {steps[:10]}{' ...' if len(steps) > 10 else ''}")
    return actions.astype(np.float32)


def _check_steps(array_shape: tuple, length: int, where: str, name: str, trailing: tuple | None = None) -> None:
    if len(array_shape) == 0 or array_shape[0] != length:
        raise DataError(f"{where}: {name} has {array_shape[0] if array_shape else 0} steps, actions have {length}")
    if trailing is not None and tuple(array_shape[1:]) != trailing:
        raise DataError(f"{where}: {name} has shape {array_shape}, expected (T, {', '.join(map(str, trailing))})")


# ----------------------------------------------------------------------------------------------------------------
# LIBERO HDF5
# ----------------------------------------------------------------------------------------------------------------
def _demo_sort_key(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else -1, name)


def _open_hdf5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except Exception as err:  # OSError mostly; any decoder failure means an unreadable file
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None


def _libero_instruction(path: Path, data) -> str:
    raw = data.attrs.get("problem_info")
    if raw is None:
        raise DataError(f"{path}: data attribute 'problem_info' is missing (it holds the language_instruction)")
    try:
        info = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: data attribute 'problem_info' is not valid JSON ({err})") from None
    instruction = str(info.get("language_instruction", "") or "").strip()
    if not instruction:
        raise DataError(f"{path}: problem_info has no language_instruction (missing or empty)")
    return instruction


def _index_libero_file(path: Path, raw_dir: Path, action_dim: int, drop_noops: bool, report: IndexReport) -> None:
    with _open_hdf5(path) as f:
        try:
            if "data" not in f:
                raise DataError(f"{path}: no 'data' group (not a LIBERO demo file)")
            data = f["data"]
            instruction = _libero_instruction(path, data)
            demos = sorted((k for k in data if k.startswith("demo")), key=_demo_sort_key)
            if not demos:
                raise DataError(f"{path}: 'data' has no demo_<i> groups")
            for key in demos:
                where = f"{path}:data/{key}"
                demo = data[key]
                report.episodes_total += 1
                for required in ("actions", "obs"):
                    if required not in demo:
                        raise DataError(f"{where}: missing '{required}'")
                actions = check_actions(demo["actions"][()], action_dim, where)
                length = actions.shape[0]
                obs = demo["obs"]
                for name in LIBERO_OBS:
                    if name not in obs:
                        raise DataError(f"{where}: missing 'obs/{name}'")
                    _check_steps(obs[name].shape, length, where, f"obs/{name}")
                for name in ("agentview_rgb", "eye_in_hand_rgb"):
                    shape = obs[name].shape
                    if len(shape) != 4 or shape[-1] != 3:
                        raise DataError(f"{where}: obs/{name} has shape {shape}, expected (T, H, W, 3)")
                success = demo.attrs.get("success")
                if success is None:
                    dones = demo["dones"][()] if "dones" in demo else None
                    success = bool(dones is not None and len(dones) > 0 and dones[-1] != 0)
                if not bool(success):
                    report.episodes_dropped_failed += 1
                    log.info("%s: failed demo dropped", where)
                    continue
                keep = noop_keep_indices(actions) if drop_noops else np.arange(length)
                report.steps_total += length
                report.noops_dropped += length - len(keep)
                if len(keep) == 0:
                    report.episodes_dropped_empty += 1
                    continue
                source = f"{path.relative_to(raw_dir) if path.is_relative_to(raw_dir) else path}/data/{key}"
                report.episodes.append(EpisodeRef(path, f"data/{key}", source, instruction, keep, length))
        except DataError:
            raise
        except Exception as err:  # OSError when a truncated file's chunks cannot be read; any other decoder error
            raise DataError(f"{path}: cannot read HDF5 data (truncated or corrupt?): {type(err).__name__}: {err}"
                            ) from None  # fmt: skip


def _load_libero(ref: EpisodeRef) -> Episode:
    with _open_hdf5(ref.path) as f:
        try:
            demo = f[ref.key]
            obs = demo["obs"]
            keep = ref.keep
            ee = obs["ee_states"][()][keep]
            gripper = obs["gripper_states"][()][keep]
            return Episode(
                source=ref.source,
                instruction=ref.instruction,
                image=obs["agentview_rgb"][()][keep],
                wrist_image=obs["eye_in_hand_rgb"][()][keep],
                state=np.concatenate([ee, gripper], axis=1).astype(np.float32),
                joint_state=obs["joint_states"][()][keep].astype(np.float32),
                action=demo["actions"][()][keep].astype(np.float32),
            )
        except Exception as err:  # OSError (truncated chunks, failed inflate) or any other decoder error
            raise DataError(f"{ref.path}:{ref.key}: cannot read HDF5 data (truncated or corrupt?): "
                            f"{type(err).__name__}: {err}") from None  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# npz
# ----------------------------------------------------------------------------------------------------------------
NPZ_REQUIRED = ("image", "state", "action", "language_instruction")


def _open_npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:  # OSError, ValueError, zipfile.BadZipFile, EOFError, …: all mean an unreadable file
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt?): {err}") from None


def _npz_get(npz, path: Path, key: str) -> np.ndarray:
    """One member of an open npz; any decoder failure (``zlib.error``, ``BadZipFile``, a bad ``.npy`` header, …)
    becomes a ``DataError`` naming the file and the member."""
    try:
        return npz[key]
    except DataError:
        raise
    except Exception as err:  # zlib.error, zipfile.BadZipFile, OSError, ValueError, EOFError, …: all decoder errors
        raise DataError(f"{path}: cannot read member '{key}' (truncated or corrupt?): "
                        f"{type(err).__name__}: {err}") from None  # fmt: skip


def _index_npz_file(path: Path, raw_dir: Path, action_dim: int, drop_noops: bool, report: IndexReport) -> None:
    with _open_npz(path) as npz:
        missing = [k for k in NPZ_REQUIRED if k not in npz.files]
        if "language_instruction" in missing:
            raise DataError(f"{path}: missing 'language_instruction' (a string naming the task)")
        if missing:
            raise DataError(f"{path}: missing {missing} (required: {list(NPZ_REQUIRED)})")
        report.episodes_total += 1
        value = _npz_get(npz, path, "language_instruction")
        value = value.item() if value.ndim == 0 else value
        if not isinstance(value, str | bytes):
            raise DataError(f"{path}: 'language_instruction' must be one string, got {type(value).__name__}")
        instruction = (value.decode() if isinstance(value, bytes) else value).strip()
        if not instruction:
            raise DataError(f"{path}: 'language_instruction' is empty")
        actions = check_actions(_npz_get(npz, path, "action"), action_dim, str(path))
        length = actions.shape[0]
        state = _npz_get(npz, path, "state")
        if state.ndim != 2:
            raise DataError(f"{path}: state has shape {state.shape}, expected (T, S)")
        _check_steps(state.shape, length, str(path), "state")
        if not np.isfinite(state).all():
            raise DataError(f"{path}: state contains NaN or inf")
        if "success" in npz.files and not bool(_npz_get(npz, path, "success")):
            report.episodes_dropped_failed += 1
            return
        keep = noop_keep_indices(actions) if drop_noops else np.arange(length)
        report.steps_total += length
        report.noops_dropped += length - len(keep)
        if len(keep) == 0:
            report.episodes_dropped_empty += 1
            return
        source = str(path.relative_to(raw_dir) if path.is_relative_to(raw_dir) else path)
        report.episodes.append(EpisodeRef(path, "", source, instruction, keep, length))


def _load_npz(ref: EpisodeRef) -> Episode:
    path, keep = ref.path, ref.keep
    with _open_npz(path) as npz:
        length = ref.num_steps
        arrays: dict[str, np.ndarray | None] = {}
        for key in ("image", "wrist_image"):
            if key in npz.files:
                image = _npz_get(npz, path, key)
                if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
                    raise DataError(f"{path}: {key} is {image.dtype} {image.shape}, expected uint8 (T, H, W, 3)")
                _check_steps(image.shape, length, str(path), key)
                arrays[key] = image[keep]
        for key in ("joint_state", "reward", "discount"):
            if key in npz.files:
                value = _npz_get(npz, path, key)
                _check_steps(value.shape, length, str(path), key)
                arrays[key] = value[keep].astype(np.float32)
        return Episode(
            source=ref.source,
            instruction=ref.instruction,
            image=arrays["image"],
            wrist_image=arrays.get("wrist_image"),
            state=_npz_get(npz, path, "state")[keep].astype(np.float32),
            joint_state=arrays.get("joint_state"),
            action=_npz_get(npz, path, "action")[keep].astype(np.float32),
            reward=arrays.get("reward"),
            discount=arrays.get("discount"),
        )


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------
INPUT_FORMATS = ("libero_hdf5", "lerobot", "npz")


def raw_files(raw_dir: Path, input_format: str) -> list[Path]:
    """The raw files of ``raw_dir`` for a file-per-episode format, sorted; none found is an error naming the pattern."""
    patterns = {"libero_hdf5": ("*.hdf5", "*.h5"), "npz": ("*.npz",)}
    if input_format not in patterns:
        raise DataError(f"convert.input_format {input_format!r} unknown; expected one of {list(INPUT_FORMATS)}")
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: raw episode folder not found")
    files = sorted({p for pattern in patterns[input_format] for p in raw_dir.rglob(pattern)})
    if not files:
        raise DataError(f"{raw_dir}: no {' or '.join(patterns[input_format])} files found (format {input_format})")
    return files


def index_episodes(
    raw_dir: Path, input_format: str, action_dim: int, drop_noops: bool, lerobot: LeRobotKeys | None = None
) -> IndexReport:
    """Phase 1: validate every episode's small arrays and decide which episodes and steps are kept.

    ``lerobot`` names the features of a LeRobot dataset (``input_format`` ``lerobot``; defaults when None)."""
    if input_format == "lerobot":
        from openvla.data.lerobot_format import LeRobotKeys, index_lerobot

        return index_lerobot(Path(raw_dir), lerobot or LeRobotKeys(), action_dim, drop_noops)
    report = IndexReport()
    index_file = _index_libero_file if input_format == "libero_hdf5" else _index_npz_file
    for path in raw_files(raw_dir, input_format):
        index_file(path, raw_dir, action_dim, drop_noops, report)
    return report


def load_episode(ref: EpisodeRef) -> Episode:
    """Phase 2: the full arrays (images included) of one indexed episode, kept steps only."""
    if getattr(ref, "input_format", "") == "lerobot":  # a LeRobotEpisodeRef (class attribute)
        from openvla.data.lerobot_format import load_lerobot_episode

        return load_lerobot_episode(ref)  # type: ignore[arg-type]
    return _load_libero(ref) if ref.key else _load_npz(ref)


def iter_episodes(refs: list[EpisodeRef]) -> Iterator[Episode]:
    for ref in refs:
        yield load_episode(ref)
