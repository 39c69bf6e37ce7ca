"""Dataset statistics (DESIGN §5): what BOUNDS_Q99 normalization and ``unnorm_key`` rely on.

For ``action`` and ``proprio`` over every step of every episode of every split, after the dataset's
standardization transform: mean, population std, max, min, numpy linear q01/q99, plus ``action.mask`` (False for
the gripper) and ``num_transitions`` / ``num_trajectories`` — the shape of OpenVLA's ``dataset_statistics.json``.
Results are cached by a hash of the builder info, the state keys and the standardization function's source.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from openvla.data.errors import DataError
from openvla.data.loader import standardized_trajectories
from openvla.data.registry import find_builder_dir, get_dataset_config, get_mixture
from openvla.io import atomic_write_bytes, atomic_write_json
from openvla.tf_import import import_tensorflow

log = logging.getLogger(__name__)

STATS_FORMAT_VERSION = 1  # bump when the computation below changes: invalidates every cache entry


def summarize(values: np.ndarray) -> dict[str, list[float]]:
    """mean / std (population) / max / min / q01 / q99 (numpy linear quantiles) per column of [N, D]."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "max": values.max(0).tolist(),
        "min": values.min(0).tolist(),
        "q01": np.quantile(values, 0.01, axis=0).tolist(),
        "q99": np.quantile(values, 0.99, axis=0).tolist(),
    }


def _locate_corrupt_shard(builder_dir: Path) -> str | None:
    """Read every TFRecord shard of the dataset to find the first unreadable one (only on the error path)."""
    tf = import_tensorflow()
    for shard in sorted(builder_dir.glob("*.tfrecord*")):
        try:
            for _ in tf.data.TFRecordDataset(str(shard)):
                pass
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as err:
            return f"{shard}: corrupt TFRecord ({err.message.splitlines()[0]})"
    return None


def _collect(data_dir: str | Path, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    tf = import_tensorflow()
    builder_dir = find_builder_dir(data_dir, name)
    ds = standardized_trajectories(data_dir, name, split="all", shuffle=False, cameras=())
    ds = ds.traj_map(lambda t: {"action": t["action"], "proprio": t["observation"]["proprio"]})
    actions, proprios = [], []
    try:
        for traj in tqdm(ds.iterator(), desc=f"statistics {name}", unit="episode", leave=False):
            actions.append(traj["action"])
            proprios.append(traj["proprio"])
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        where = _locate_corrupt_shard(builder_dir) or f"{builder_dir}: unreadable data ({err.message.splitlines()[0]})"
        raise DataError(where) from None
    if not actions:
        raise DataError(f"{builder_dir}: dataset {name!r} has no episodes with steps")
    return np.concatenate(actions), np.concatenate(proprios), len(actions)


def compute_dataset_statistics(data_dir: str | Path, dataset_name: str) -> dict[str, Any]:
    """Statistics of one registered dataset found under ``data_dir`` (uncached), DESIGN §5 shape."""
    config = get_dataset_config(dataset_name)
    actions, proprios, trajectories = _collect(data_dir, dataset_name)
    if not np.isfinite(actions).all():
        raise DataError(f"dataset {dataset_name!r} in {data_dir}: actions contain NaN or inf after standardization")
    mask = config.normalization_mask
    if len(mask) != actions.shape[1]:
        raise DataError(
            f"dataset {dataset_name!r}: action has {actions.shape[1]} dims but its action encoding "
            f"{config.action_encoding} expects {len(mask)} (fix the DatasetConfig or the standardize transform)"
        )
    action = summarize(actions)
    action["mask"] = list(mask)
    return {
        "action": action,
        "proprio": summarize(proprios),
        "num_transitions": int(actions.shape[0]),
        "num_trajectories": int(trajectories),
    }


def _function_source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"


def statistics_hash(data_dir: str | Path, dataset_name: str) -> str:
    """What the cache is keyed on: builder info + features, state keys, image keys, transform source."""
    config = get_dataset_config(dataset_name)
    builder_dir = find_builder_dir(data_dir, dataset_name)
    parts = {
        "format": STATS_FORMAT_VERSION,
        "name": dataset_name,
        "dataset_info": (builder_dir / "dataset_info.json").read_text(),
        "features": (builder_dir / "features.json").read_text() if (builder_dir / "features.json").exists() else "",
        "state_obs_keys": [str(k) for k in config.state_obs_keys],
        "language_key": config.language_key,
        "mask": config.normalization_mask,
        "standardize": _function_source(config.standardize),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_dataset_statistics(data_dir: str | Path, dataset_name: str, cache_dir: str | Path) -> dict[str, Any]:
    """``compute_dataset_statistics`` with an on-disk cache (``<cache_dir>/<name>-<hash16>.json``, atomic)."""
    key = statistics_hash(data_dir, dataset_name)
    path = Path(cache_dir) / f"{dataset_name}-{key[:16]}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("hash") == key:
                log.info("Statistics of %s from cache %s", dataset_name, path)
                return cached["statistics"]
        except (OSError, json.JSONDecodeError):
            log.warning("Ignoring unreadable statistics cache %s", path)
    stats = compute_dataset_statistics(data_dir, dataset_name)
    atomic_write_json(path, {"hash": key, "dataset": dataset_name, "statistics": stats})
    return stats


def action_histograms(data_dir: str | Path, dataset_name: str, bins: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per action dim (standardized, unnormalized): (dim, bin centers, counts)."""
    actions, _, _ = _collect(data_dir, dataset_name)
    out = []
    for dim in range(actions.shape[1]):
        counts, edges = np.histogram(actions[:, dim], bins=bins)
        out.append((dim, (edges[:-1] + edges[1:]) / 2, counts))
    return out


def _histogram_csv(centers: np.ndarray, counts: np.ndarray) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["value", "count"])
    for c, n in zip(centers, counts, strict=True):
        writer.writerow([f"{c:.6g}", int(n)])
    return buffer.getvalue().encode()


def summary_metrics(statistics: Mapping[str, Any]) -> dict[str, float]:
    """Flat metrics for ``metrics/stats.json`` and MLflow: counts and per-dim action mean/std per dataset."""
    summary: dict[str, float] = {}
    for name, stats in statistics.items():
        summary[f"{name}/num_transitions"] = stats["num_transitions"]
        summary[f"{name}/num_trajectories"] = stats["num_trajectories"]
        for i, (m, s) in enumerate(zip(stats["action"]["mean"], stats["action"]["std"], strict=True)):
            summary[f"{name}/action_mean_{i}"] = round(float(m), 6)
            summary[f"{name}/action_std_{i}"] = round(float(s), 6)
    summary["num_transitions"] = sum(s["num_transitions"] for s in statistics.values())
    summary["num_trajectories"] = sum(s["num_trajectories"] for s in statistics.values())
    return summary


def write_statistics(
    data_dir: str | Path,
    name: str,
    *,
    out: str | Path,
    plots_dir: str | Path,
    cache_dir: str | Path,
    bins: int = 50,
) -> dict[str, float]:
    """The ``stats`` stage: statistics of a dataset or of every dataset of a mixture → ``out`` (atomic), one
    histogram CSV per action dim under ``plots_dir/<dataset>/``; returns the summary metrics."""
    names = [n for n, _ in get_mixture(name)]
    statistics = {n: cached_dataset_statistics(data_dir, n, cache_dir) for n in names}
    plots_dir = Path(plots_dir)
    for n in names:
        for dim, centers, counts in action_histograms(data_dir, n, bins):
            atomic_write_bytes(plots_dir / n / f"action_dim{dim}.csv", _histogram_csv(centers, counts))
    atomic_write_json(out, statistics)
    for n in names:
        log.info(
            "%s: %d transitions, %d trajectories",
            n,
            statistics[n]["num_transitions"],
            statistics[n]["num_trajectories"],
        )
    return summary_metrics(statistics)
