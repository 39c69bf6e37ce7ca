"""The ``convert`` stage's library call: raw episodes → RLDS, with OpenVLA's LIBERO conversion rules.

``convert_dataset(raw_dir, data_dir, cfg)`` validates every raw episode first (nothing is written when one is
bad; ``raw_dir`` holds episode files, or is a LeRobot v3.0 dataset directory for ``input_format`` lerobot), then
writes ``<data_dir>/<cfg.dataset_name>/<cfg.version>/`` with a TFDS builder (splits ``train`` and, when
``cfg.val_fraction`` > 0, ``val`` = the last episodes). Images are rotated 180° when ``cfg.rotate_180`` (LIBERO
renders upside down) and optionally resized to ``cfg.image_size``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from openvla.config import ConvertConfig
from openvla.data.errors import DataError
from openvla.data.lerobot_format import LeRobotKeys
from openvla.data.raw_episodes import Episode, EpisodeRef, index_episodes, load_episode
from openvla.data.rlds_writer import episode_example, episode_features, write_rlds

log = logging.getLogger(__name__)


def _prepare_images(episode: Episode, rotate_180: bool, image_size: int) -> Episode:
    for key in ("image", "secondary_image", "wrist_image"):
        images = getattr(episode, key)
        if images is None:
            continue
        if rotate_180:
            images = images[:, ::-1, ::-1]
        if image_size:
            from openvla.data.image_ops import resize_tf

            images = resize_tf(np.ascontiguousarray(images), image_size).numpy()
        setattr(episode, key, np.ascontiguousarray(images))
    return episode


def _shapes(episode: Episode) -> dict[str, Any]:
    return {
        "image": episode.image.shape[1:],
        "secondary_image": None if episode.secondary_image is None else episode.secondary_image.shape[1:],
        "wrist_image": None if episode.wrist_image is None else episode.wrist_image.shape[1:],
        "state": episode.state.shape[1],
        "joint_state": None if episode.joint_state is None else episode.joint_state.shape[1],
    }


def lerobot_keys(cfg: ConvertConfig) -> LeRobotKeys:
    """The ``convert.lerobot_*`` params as the LeRobot reader's key mapping (unused by the other formats)."""
    return LeRobotKeys(cameras=dict(cfg.lerobot_cameras), state=cfg.lerobot_state, action=cfg.lerobot_action)


def split_episodes(refs: list[EpisodeRef], val_fraction: float) -> dict[str, list[EpisodeRef]]:
    """``train`` = the first episodes, ``val`` = the last ``val_fraction`` of them (at least one when > 0)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"convert.val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return {"train": refs}
    n_val = max(1, math.floor(len(refs) * val_fraction + 0.5))
    if n_val >= len(refs):
        raise DataError(f"convert.val_fraction={val_fraction} leaves no training episode out of {len(refs)}")
    return {"train": refs[:-n_val], "val": refs[-n_val:]}


def convert_dataset(raw_dir: str | Path, data_dir: str | Path, cfg: ConvertConfig) -> dict[str, float]:
    """Convert ``raw_dir`` to RLDS under ``data_dir``; returns the metrics of ``metrics/convert.json``."""
    raw_dir, data_dir = Path(raw_dir), Path(data_dir)
    report = index_episodes(raw_dir, cfg.input_format, cfg.action_dim, cfg.drop_noops, lerobot_keys(cfg))
    if not report.episodes:
        raise DataError(
            f"{raw_dir}: no episode left to convert ({report.episodes_total} found, "
            f"{report.episodes_dropped_failed} failed, {report.episodes_dropped_empty} only no-ops)"
        )
    splits = split_episodes(report.episodes, cfg.val_fraction)

    first = _prepare_images(load_episode(report.episodes[0]), cfg.rotate_180, cfg.image_size)
    shapes = _shapes(first)
    features = episode_features(
        image_shape=shapes["image"],
        state_dim=shapes["state"],
        action_dim=cfg.action_dim,
        wrist_shape=shapes["wrist_image"],
        joint_dim=shapes["joint_state"],
        secondary_shape=shapes["secondary_image"],
    )

    def examples(refs: list[EpisodeRef]):
        def generate() -> Iterator[tuple[str, dict[str, Any]]]:
            for ref in refs:
                episode = _prepare_images(load_episode(ref), cfg.rotate_180, cfg.image_size)
                found = _shapes(episode)
                if found != shapes:
                    diff = {k: (found[k], shapes[k]) for k in shapes if found[k] != shapes[k]}
                    raise DataError(
                        f"{ref.path}: {ref.key or 'episode'} shapes differ from the first episode's "
                        f"(found, expected): {diff}"
                    )
                yield ref.source, episode_example(episode)

        return generate

    description = (
        f"Converted by `openvla convert` from {cfg.input_format} episodes in {raw_dir.name}/ "
        f"(rotate_180={cfg.rotate_180}, drop_noops={cfg.drop_noops})."
    )
    out = write_rlds(
        data_dir,
        cfg.dataset_name,
        cfg.version,
        features,
        {split: examples(refs) for split, refs in splits.items()},
        description,
    )
    steps_kept = int(sum(len(r.keep) for r in report.episodes))
    metrics = {
        "episodes_total": report.episodes_total,
        "episodes_kept": len(report.episodes),
        "episodes_dropped_failed": report.episodes_dropped_failed,
        "episodes_dropped_noop_only": report.episodes_dropped_empty,
        "steps_total": report.steps_total,
        "steps_kept": steps_kept,
        "noops_dropped": report.noops_dropped,
        "train_episodes": len(splits["train"]),
        "val_episodes": len(splits.get("val", [])),
    }
    log.info("Converted %s → %s: %s", raw_dir, out, metrics)
    return metrics
