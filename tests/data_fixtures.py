"""Factories for tiny raw datasets used by the data tests and the data benchmark (LIBERO-style HDF5, npz)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def quadrant_images(length: int, size: int, offset: int) -> np.ndarray:
    """(T, size, size, 3) uint8 with four flat grey quadrants whose levels differ (so a 180° rotation is visible and
    JPEG keeps them almost exactly): TL = 40 + offset + t, TR = 120, BL = 200, BR = 10."""
    images = np.empty((length, size, size, 3), np.uint8)
    half = size // 2
    for t in range(length):
        images[t, :half, :half] = (40 + offset + t) % 256
        images[t, :half, half:] = 120
        images[t, half:, :half] = 200
        images[t, half:, half:] = 10
    return images


def demo_actions(length: int, seed: int, noop_steps: tuple[int, ...] = ()) -> np.ndarray:
    """(T, 7) LIBERO actions: random xyz/rot in [-1, 1], gripper −1 (open) for the first half, +1 (close) after;
    at ``noop_steps`` the arm part is zero and the gripper repeats the previous step's (a no-op)."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(length, 7))
    actions[:, 6] = np.where(np.arange(length) < length // 2, -1.0, 1.0)
    for t in noop_steps:
        actions[t, :6] = 0.0
        actions[t, 6] = actions[t - 1, 6] if t > 0 else -1.0
    return actions


def write_libero_hdf5(
    path: Path,
    instruction: str,
    demos: list[dict],
    size: int = 32,
) -> Path:
    """A LIBERO-style ``*_demo.hdf5`` (team contract layout). Each demo dict: ``actions`` (T, 7), optional
    ``success`` (bool attr), ``done_last`` (int, default 1), ``offset`` (image level offset)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": instruction, "problem_name": "test"})
        data.attrs["env_args"] = json.dumps({"env_name": "test"})
        data.attrs["total"] = int(sum(len(d["actions"]) for d in demos))
        for i, demo in enumerate(demos):
            actions = np.asarray(demo["actions"], np.float64)
            length = len(actions)
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = length
            if "success" in demo:
                g.attrs["success"] = bool(demo["success"])
            dones = np.zeros(length, np.uint8)
            dones[-1] = demo.get("done_last", 1)
            g.create_dataset("actions", data=actions)
            g.create_dataset("dones", data=dones)
            g.create_dataset("rewards", data=dones.copy())
            g.create_dataset("states", data=np.zeros((length, 10)))
            g.create_dataset("robot_states", data=np.zeros((length, 9)))
            obs = g.create_group("obs")
            offset = demo.get("offset", 10 * i)
            obs.create_dataset("agentview_rgb", data=quadrant_images(length, size, offset))
            obs.create_dataset("eye_in_hand_rgb", data=quadrant_images(length, size, offset + 100))
            t = np.arange(length, dtype=np.float64)[:, None]
            obs.create_dataset("ee_states", data=np.hstack([t * 0.01 + i, np.ones((length, 5)) * 0.1 * (i + 1)]))
            obs.create_dataset("gripper_states", data=np.hstack([t * 0.001, -t * 0.001]))
            obs.create_dataset("joint_states", data=np.tile(np.arange(7.0), (length, 1)) + t)
    return path


def write_npz_episodes(
    directory: Path,
    num_episodes: int,
    length: int,
    size: int = 32,
    seed: int = 0,
    instruction: str = "stack the red block",
    wrist: bool = True,
) -> list[Path]:
    """``episode_XXXX.npz`` files in the README's own-robot format (EEF_POS actions, gripper 1 = open)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for e in range(num_episodes):
        action = rng.normal(0, 0.3, size=(length, 7)).astype(np.float32)
        action[:, 6] = (np.arange(length) < length // 2).astype(np.float32)
        episode = {
            "image": rng.integers(0, 256, size=(length, size, size, 3), dtype=np.uint8),
            "state": rng.normal(size=(length, 8)).astype(np.float32),
            "action": action,
            "language_instruction": np.array(instruction),
        }
        if wrist:
            episode["wrist_image"] = rng.integers(0, 256, size=(length, size, size, 3), dtype=np.uint8)
        path = directory / f"episode_{e:04d}.npz"
        np.savez_compressed(path, **episode)
        paths.append(path)
    return paths
