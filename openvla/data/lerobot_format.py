"""Read a local LeRobot dataset (format v3.0, as the ``lerobot`` package writes it) as raw episodes for ``convert``.

Why not ``lerobot`` itself: it pins torch and huggingface-hub versions that cannot share our environment (DESIGN
§16), so the layout is read here with pyarrow (parquet) and PyAV (mp4). Nothing is ever read from the hub.

The layout (DESIGN §16):

* ``meta/info.json``: ``codebase_version`` (``v3.x``), ``fps``, ``features`` (``dtype`` ``video`` / ``image`` for
  cameras, numeric dtypes with a ``shape`` for vectors), ``data_path`` and ``video_path`` templates.
* ``meta/tasks.parquet``: one row per task string with its ``task_index``.
* ``meta/episodes/chunk-XXX/file-YYY.parquet``: one row per episode: ``episode_index``, ``length``,
  ``data/chunk_index``, ``data/file_index`` and, per video key, ``videos/<key>/{chunk_index, file_index,
  from_timestamp, to_timestamp}``.
* ``data/chunk-XXX/file-YYY.parquet``: one row per frame of many episodes (``episode_index``, ``frame_index``,
  ``timestamp``, ``task_index``, the state and action vectors, image features as encoded bytes).
* ``videos/<key>/chunk-XXX/file-YYY.mp4``: many episodes one after the other; frame ``i`` of an episode is the frame
  at ``from_timestamp + timestamp[i]`` seconds of that file.

The keys map onto our RLDS as ``convert.lerobot_cameras`` (camera role → feature), ``convert.lerobot_state`` and
``convert.lerobot_action`` say; the episode's task string is the language instruction. Reading is two-phase like the
other formats: ``index_lerobot`` checks the parquet side of every episode (and that every video file exists) before
anything is written; ``load_lerobot_episode`` decodes one episode's frames and checks that the video holds exactly
one frame per parquet row at the row's timestamp.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from openvla.data.errors import DataError
from openvla.data.raw_episodes import Episode, EpisodeRef, IndexReport, check_actions, noop_keep_indices

log = logging.getLogger(__name__)

# Camera role → the Episode field (and RLDS observation key) it fills.
ROLE_FIELDS: dict[str, str] = {"primary": "image", "secondary": "secondary_image", "wrist": "wrist_image"}
CAMERA_DTYPES = ("video", "image")
# Columns every v3.0 data file has next to the features; not offered as state/action choices in error messages.
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


@dataclass(frozen=True)
class LeRobotKeys:
    """Which LeRobot features become which RLDS fields (``convert.lerobot_*``)."""

    cameras: Mapping[str, str] = field(default_factory=dict)  # role → feature key; empty = the only camera → primary
    state: str = "observation.state"
    action: str = "action"


@dataclass(frozen=True)
class CameraSource:
    """Where one camera's frames of one episode are: a span of an mp4 file, or an image column of the data file."""

    key: str  # feature key, e.g. "observation.images.top"
    dtype: str  # "video" or "image"
    video: Path | None = None
    from_timestamp: float = 0.0
    to_timestamp: float = 0.0


@dataclass
class LeRobotEpisodeRef(EpisodeRef):
    """An ``EpisodeRef`` of a LeRobot episode; the small arrays are kept (read once in the index phase)."""

    input_format: ClassVar[str] = "lerobot"  # how ``raw_episodes.load_episode`` dispatches

    episode_index: int
    data_file: Path
    fps: float
    timestamps: np.ndarray  # (T,) seconds from the episode start, frame order
    state: np.ndarray  # (T, S) float32
    action: np.ndarray  # (T, A) float32
    cameras: dict[str, CameraSource]  # role → source


# ----------------------------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------------------------
def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json``, checked for the v3 layout."""
    path = root / "meta" / "info.json"
    if not root.is_dir():
        raise DataError(f"{root}: LeRobot dataset directory not found")
    if not path.is_file():
        raise DataError(f"{path}: not found; a LeRobot dataset directory has meta/info.json (convert.input_format "
                        "lerobot reads a local dataset, never the hub)")  # fmt: skip
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DataError(
            f"{path}: codebase_version {version or '(missing)'!r}; this reader reads the v3.0 layout (many episodes "
            "per file). Convert older datasets to v3.0 with the lerobot package first."
        )
    for key in ("fps", "features"):
        if key not in info:
            raise DataError(f"{path}: missing {key!r}")
    if not isinstance(info["features"], dict):
        raise DataError(f"{path}: 'features' must be a mapping of feature key → description")
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0:
        raise DataError(f"{path}: fps must be a positive number, got {fps!r}")
    return info


def resolve_cameras(info: dict[str, Any], cameras: Mapping[str, str], where: Path) -> dict[str, tuple[str, str]]:
    """Role → (feature key, dtype), checked against ``meta/info.json``; errors list the dataset's cameras."""
    features: dict[str, Any] = info["features"]
    available = {
        k: f.get("dtype") for k, f in features.items() if isinstance(f, dict) and f.get("dtype") in CAMERA_DTYPES
    }
    if not cameras:
        if len(available) == 1:
            key = next(iter(available))
            log.info("convert.lerobot_cameras is empty: the only camera %s is the primary camera", key)
            return {"primary": (key, available[key])}
        if not available:
            raise DataError(f"{where}: no camera feature (dtype video or image) in 'features'; the RLDS needs a "
                            "primary camera")  # fmt: skip
        raise DataError(
            f"{where}: the dataset has {len(available)} cameras {sorted(available)}; say which is which in "
            "convert.lerobot_cameras, e.g. {primary: <key>, wrist: <key>} (roles: primary, secondary, wrist)"
        )
    resolved: dict[str, tuple[str, str]] = {}
    for role, key in cameras.items():
        if role not in ROLE_FIELDS:
            raise DataError(f"convert.lerobot_cameras.{role}: unknown camera role; expected one of {list(ROLE_FIELDS)}")
        if key not in features:
            raise DataError(
                f"{where}: no feature {key!r} (convert.lerobot_cameras.{role}); camera features of this dataset: "
                f"{sorted(available) or 'none'}"
            )
        if key not in available:
            raise DataError(
                f"{where}: feature {key!r} (convert.lerobot_cameras.{role}) has dtype {features[key].get('dtype')!r}, "
                f"expected 'video' or 'image'; camera features: {sorted(available) or 'none'}"
            )
        if (features[key].get("info") or {}).get("video.is_depth_map"):
            raise DataError(f"{where}: feature {key!r} (convert.lerobot_cameras.{role}) is a depth map, not RGB")
        resolved[role] = (key, available[key])
    if "primary" not in resolved:
        raise DataError(f"convert.lerobot_cameras: no 'primary' camera, got roles {sorted(resolved)}")
    return resolved


def _check_vector_feature(info: dict[str, Any], key: str, param: str, where: Path) -> None:
    features: dict[str, Any] = info["features"]
    vectors = sorted(
        k
        for k, f in features.items()
        if isinstance(f, dict) and f.get("dtype") not in (*CAMERA_DTYPES, "string") and k not in BOOKKEEPING
    )
    if key not in features:
        raise DataError(f"{where}: no feature {key!r} ({param}); vector features of this dataset: {vectors}")
    if features[key].get("dtype") in (*CAMERA_DTYPES, "string"):
        raise DataError(f"{where}: feature {key!r} ({param}) has dtype {features[key].get('dtype')!r}, expected a "
                        f"numeric vector; vector features: {vectors}")  # fmt: skip


def _read_parquet(path: Path, columns: list[str] | None = None, filters: Any = None):
    """A pyarrow table of ``path`` (only ``columns``); a missing column or an unreadable file names the file."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if columns is not None:
            names = pq.read_schema(path).names
            missing = [c for c in columns if c not in names]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; columns present: {names}")
        return pq.read_table(path, columns=columns, filters=filters)
    except DataError:
        raise
    except Exception as err:  # ArrowInvalid, OSError: any reader failure means a bad file
        raise DataError(f"{path}: not a readable parquet file (truncated or corrupt?): {err}") from None


def read_tasks(root: Path) -> dict[int, str]:
    """``task_index`` → task string from ``meta/tasks.parquet`` (the task string is pandas' index there)."""
    path = root / "meta" / "tasks.parquet"
    table = _read_parquet(path)
    names = table.column_names
    if "task_index" not in names:
        raise DataError(f"{path}: no 'task_index' column; columns present: {names}")
    text = next((c for c in ("task", "__index_level_0__") if c in names), None)
    if text is None:
        strings = [c for c in names if str(table.schema.field(c).type) in ("string", "large_string")]
        text = strings[0] if strings else None
    if text is None:
        raise DataError(f"{path}: no task string column (expected 'task'); columns present: {names}")
    indices = table.column("task_index").to_pylist()
    texts = table.column(text).to_pylist()
    return {int(i): str(t) for i, t in zip(indices, texts, strict=True)}


def read_episodes_meta(root: Path, video_keys: list[str]) -> list[dict[str, Any]]:
    """One dict per episode (sorted by ``episode_index``) with the columns the reader needs."""
    import pyarrow as pa

    directory = root / "meta" / "episodes"
    files = sorted(directory.rglob("*.parquet")) if directory.is_dir() else []
    if not files:
        raise DataError(f"{directory}: no episode metadata (*.parquet) found")
    columns = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    for key in video_keys:
        columns += [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    table = pa.concat_tables([_read_parquet(path, columns) for path in files])
    rows = table.to_pylist()
    rows.sort(key=lambda r: r["episode_index"])
    seen = [r["episode_index"] for r in rows]
    if len(set(seen)) != len(seen):
        raise DataError(f"{directory}: episode_index values repeat across the metadata files")
    return rows


def _template(info: dict[str, Any], key: str, default: str) -> str:
    value = info.get(key)
    return value if isinstance(value, str) and value else default


# ----------------------------------------------------------------------------------------------------------------
# Data columns
# ----------------------------------------------------------------------------------------------------------------
def column_matrix(table: Any, name: str, where: str) -> np.ndarray:
    """A (rows, D) float array of a list/fixed-size-list column (or a scalar column as D = 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name)
    rows = len(column)
    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        lengths = np.asarray(pc.list_value_length(column).to_numpy(zero_copy_only=False))
        if rows and (np.any(lengths != lengths[0]) or np.isnan(lengths.astype(float)).any()):
            raise DataError(f"{where}: column {name!r} has rows of different lengths or missing rows")
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if rows else 0
        values = np.asarray(flat).reshape(rows, width)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        values = np.asarray(column.to_numpy()).reshape(rows, 1)
    else:
        raise DataError(f"{where}: column {name!r} has type {kind}, expected a list of numbers")
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        raise DataError(f"{where}: column {name!r} has values of type {values.dtype}, expected numbers")
    return values


class _DataFileCache:
    """The last data file read (episodes of one file are consecutive, so each file is read once)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.path: Path | None = None
        self.table: Any = None
        self.episode_column: np.ndarray | None = None

    def rows(self, path: Path, episode_index: int) -> tuple[Any, np.ndarray]:
        if path != self.path:
            self.table = _read_parquet(path, self.columns)
            self.episode_column = np.asarray(self.table.column("episode_index").to_numpy())
            self.path = path
        assert self.episode_column is not None
        return self.table, np.flatnonzero(self.episode_column == episode_index)


# ----------------------------------------------------------------------------------------------------------------
# Phase 1: index
# ----------------------------------------------------------------------------------------------------------------
def index_lerobot(root: Path, keys: LeRobotKeys, action_dim: int, drop_noops: bool) -> IndexReport:
    """Validate every episode's parquet side and the presence of its video files; nothing is decoded yet."""
    root = Path(root)
    info = read_info(root)
    info_path = root / "meta" / "info.json"
    cameras = resolve_cameras(info, keys.cameras, info_path)
    _check_vector_feature(info, keys.state, "convert.lerobot_state", info_path)
    _check_vector_feature(info, keys.action, "convert.lerobot_action", info_path)
    fps = float(info["fps"])
    tasks = read_tasks(root)
    video_keys = sorted({key for key, dtype in cameras.values() if dtype == "video"})
    episodes = read_episodes_meta(root, video_keys)
    data_path = _template(info, "data_path", DEFAULT_DATA_PATH)
    video_path = _template(info, "video_path", DEFAULT_VIDEO_PATH)
    cache = _DataFileCache(["episode_index", "frame_index", "timestamp", "task_index", keys.state, keys.action])
    report = IndexReport()
    for meta in tqdm(episodes, desc=f"lerobot {root.name}: index", unit="episode", dynamic_ncols=True):
        index = int(meta["episode_index"])
        data_file = root / data_path.format(chunk_index=meta["data/chunk_index"], file_index=meta["data/file_index"])
        where = f"{data_file}: episode {index}"
        table, rows = cache.rows(data_file, index)
        report.episodes_total += 1
        if len(rows) != int(meta["length"]):
            raise DataError(f"{where}: {len(rows)} rows, but meta/episodes says length {meta['length']}")
        if len(rows) == 0:
            raise DataError(f"{where}: episode has no steps")
        frame_index = np.asarray(table.column("frame_index").take(rows).to_numpy())
        order = np.argsort(frame_index, kind="stable")
        if not np.array_equal(frame_index[order], np.arange(len(rows))):
            raise DataError(f"{where}: frame_index is not 0..{len(rows) - 1} once each (found "
                            f"{frame_index[:10].tolist()}{' ...' if len(rows) > 10 else ''})")  # fmt: skip
        rows = rows[order]
        episode = table.take(rows)
        timestamps = np.asarray(episode.column("timestamp").to_numpy(), dtype=np.float64)
        if np.any(np.diff(timestamps) <= 0):
            raise DataError(f"{where}: timestamps do not increase with frame_index")
        actions = check_actions(column_matrix(episode, keys.action, where), action_dim, f"{where} ({keys.action})")
        state = column_matrix(episode, keys.state, where).astype(np.float32)
        if not np.isfinite(state).all():
            raise DataError(f"{where}: {keys.state} contains NaN or inf")
        task_ids = sorted({int(t) for t in episode.column("task_index").to_pylist()})
        unknown = [t for t in task_ids if t not in tasks]
        if unknown:
            raise DataError(f"{where}: task_index {unknown} not in meta/tasks.parquet")
        instruction = tasks[task_ids[0]].strip()
        if len(task_ids) > 1:
            log.warning("%s: several tasks %s; the first is the instruction", where, [tasks[t] for t in task_ids])
        if not instruction:
            raise DataError(f"{where}: the task string (task_index {task_ids[0]}) is empty")
        sources: dict[str, CameraSource] = {}
        for role, (key, dtype) in cameras.items():
            if dtype == "image":
                sources[role] = CameraSource(key, dtype)
                continue
            video = root / video_path.format(
                video_key=key,
                chunk_index=meta[f"videos/{key}/chunk_index"],
                file_index=meta[f"videos/{key}/file_index"],
            )
            if not video.is_file():
                raise DataError(f"{video}: video file of {key} for episode {index} not found")
            sources[role] = CameraSource(
                key,
                dtype,
                video,
                float(meta[f"videos/{key}/from_timestamp"]),
                float(meta[f"videos/{key}/to_timestamp"]),
            )
        length = len(rows)
        keep = noop_keep_indices(actions) if drop_noops else np.arange(length)
        report.steps_total += length
        report.noops_dropped += length - len(keep)
        if len(keep) == 0:
            report.episodes_dropped_empty += 1
            continue
        source = f"{root.name}/episode_{index:06d}"
        report.episodes.append(
            LeRobotEpisodeRef(
                path=root,
                key=f"episode_{index:06d}",
                source=source,
                instruction=instruction,
                keep=keep,
                num_steps=length,
                episode_index=index,
                data_file=data_file,
                fps=fps,
                timestamps=timestamps,
                state=state,
                action=actions,
                cameras=sources,
            )
        )
    return report


# ----------------------------------------------------------------------------------------------------------------
# Phase 2: frames
# ----------------------------------------------------------------------------------------------------------------
def decode_video_span(path: Path, start: float, timestamps: np.ndarray, fps: float, where: str) -> np.ndarray:
    """(T, H, W, 3) uint8: the frames at ``start + timestamps`` of ``path``, exactly one per timestamp.

    Seeks to the keyframe before ``start`` and decodes until the last timestamp; every frame of the span must match
    its row's timestamp within half a frame period, so a missing, extra or shifted frame is an error, not a silent
    offset between images and actions."""
    import av  # PyAV, lazily: only the lerobot input format decodes video

    tolerance = 0.5 / fps
    targets = start + np.asarray(timestamps, dtype=np.float64)
    first, last = float(targets[0]) - tolerance, float(targets[-1]) + tolerance
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            if first > 0 and stream.time_base is not None:
                container.seek(max(0, int(first / float(stream.time_base))), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None:
                    raise DataError(f"{path}: a frame has no timestamp (pts)")
                if frame.time < first:
                    continue
                if frame.time >= last:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.time))
    except DataError:
        raise
    except Exception as err:  # av.error.*: a truncated or undecodable file
        raise DataError(f"{path}: cannot decode video ({where}): {type(err).__name__}: {err}") from None
    if len(frames) != len(targets):
        raise DataError(
            f"{where}: {path} has {len(frames)} frames between {first + tolerance:.4f}s and {last - tolerance:.4f}s, "
            f"but the data parquet has {len(targets)} rows for this episode (frame count mismatch)"
        )
    offsets = np.abs(np.asarray(times) - targets)
    if offsets.max() >= tolerance:
        step = int(offsets.argmax())
        raise DataError(f"{where}: {path} frame {step} is at {times[step]:.4f}s, its row's timestamp says "
                        f"{targets[step]:.4f}s (more than half a frame apart)")  # fmt: skip
    return np.stack(frames)


def _decode_image(value: Any, where: str, step: int) -> np.ndarray:
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise DataError(f"{where}: image of frame {step} has no embedded bytes (only a path?)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as err:  # PIL.UnidentifiedImageError, OSError: a bad image
        raise DataError(f"{where}: image of frame {step} cannot be decoded: {err}") from None


def _image_column(ref: LeRobotEpisodeRef, key: str) -> np.ndarray:
    where = f"{ref.data_file}: episode {ref.episode_index} ({key})"
    table = _read_parquet(ref.data_file, ["frame_index", key], filters=[("episode_index", "==", ref.episode_index)])
    frame_index = np.asarray(table.column("frame_index").to_numpy())
    values = table.column(key).to_pylist()
    if len(values) != ref.num_steps:
        raise DataError(f"{where}: {len(values)} images, {ref.num_steps} rows when indexed")
    order = np.argsort(frame_index, kind="stable")
    images = [_decode_image(values[i], where, int(frame_index[i])) for i in order]
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"{where}: images of different sizes {sorted(shapes)}")
    return np.stack(images)


def load_lerobot_episode(ref: LeRobotEpisodeRef) -> Episode:
    """The episode's frames (decoded), state and action, kept steps only."""
    arrays: dict[str, np.ndarray] = {}
    for role, camera in ref.cameras.items():
        if camera.dtype == "video":
            assert camera.video is not None
            where = f"episode {ref.episode_index} ({camera.key})"
            frames = decode_video_span(camera.video, camera.from_timestamp, ref.timestamps, ref.fps, where)
        else:
            frames = _image_column(ref, camera.key)
        arrays[ROLE_FIELDS[role]] = frames[ref.keep]
    log.debug("decoded episode %d (%d steps)", ref.episode_index, len(ref.keep))
    return Episode(
        source=ref.source,
        instruction=ref.instruction,
        image=arrays["image"],
        secondary_image=arrays.get("secondary_image"),
        wrist_image=arrays.get("wrist_image"),
        state=ref.state[ref.keep],
        action=ref.action[ref.keep],
    )
