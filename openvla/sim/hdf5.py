"""Write and read demonstrations in LIBERO's HDF5 layout (the team contract's "Raw LIBERO-style HDF5").

One file per task, ``<task_name>_demo.hdf5``::

    data                      attrs: problem_info (JSON, with "language_instruction"), env_args (JSON), total (int)
    data/demo_<i>             attrs: num_samples (int), success (bool)
        actions      (T, 7)   float64  [dx, dy, dz, drx, dry, drz, gripper −1 open / +1 close]
        dones        (T,)     uint8    last = 1 on success
        rewards      (T,)     uint8
        states       (T, S)   float64  flattened MuJoCo states
        robot_states (T, 9)   float64  gripper qpos(2) + eef pos(3) + eef quat(4)
        obs/agentview_rgb     (T, H, W, 3) uint8  as rendered (upside down)
        obs/eye_in_hand_rgb   (T, H, W, 3) uint8
        obs/ee_states         (T, 6) float64  eef pos + axis-angle
        obs/gripper_states    (T, 2) float64  finger joint positions
        obs/joint_states      (T, 7) float64

Images are gzip-compressed per frame (h5py decompresses transparently); LIBERO's own files are uncompressed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

OBS_KEYS = ("agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states", "joint_states")
IMAGE_KEYS = ("agentview_rgb", "eye_in_hand_rgb")


@dataclass
class DemoEpisode:
    """One recorded episode; every array has the same leading length T."""

    actions: np.ndarray  # (T, 7) float64, the expert's (clean) action
    states: np.ndarray  # (T, S) float64
    robot_states: np.ndarray  # (T, 9) float64
    obs: dict[str, np.ndarray]  # OBS_KEYS → arrays as in the module docstring
    success: bool
    attrs: dict[str, Any] = field(default_factory=dict)  # extra per-demo attributes (seed, noisy, ...)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def validate(self) -> None:
        """Check shapes and dtypes against the contract; raise ``ValueError`` naming the field."""
        t = len(self)
        expect = {"actions": (self.actions, (t, 7)), "robot_states": (self.robot_states, (t, 9))}
        for key in OBS_KEYS:
            if key not in self.obs:
                raise ValueError(f"demo episode is missing obs/{key}")
        expect.update({f"obs/{k}": (self.obs[k], None) for k in OBS_KEYS})
        for name, (arr, shape) in expect.items():
            if arr.shape[0] != t or (shape is not None and arr.shape != shape):
                raise ValueError(f"demo episode field {name}: shape {arr.shape}, expected leading length {t}")
        if self.states.ndim != 2 or self.states.shape[0] != t:
            raise ValueError(f"demo episode field states: shape {self.states.shape}, expected ({t}, S)")
        for key in IMAGE_KEYS:
            img = self.obs[key]
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3:
                raise ValueError(f"demo episode field obs/{key}: {img.dtype} {img.shape}, expected uint8 (T, H, W, 3)")


def write_libero_hdf5(
    path: str | Path,
    episodes: Sequence[DemoEpisode],
    *,
    problem_info: dict[str, Any],
    env_args: dict[str, Any],
    compression: str | None = "gzip",
) -> None:
    """Write ``episodes`` as ``data/demo_0 … demo_{n-1}`` (not atomic on its own: write inside an atomic directory)."""
    if "language_instruction" not in problem_info:
        raise ValueError("problem_info must contain 'language_instruction'")
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps(problem_info)
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["total"] = int(sum(len(ep) for ep in episodes))
        for i, ep in enumerate(episodes):
            ep.validate()
            t = len(ep)
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = t
            g.attrs["success"] = bool(ep.success)
            for key, value in ep.attrs.items():
                g.attrs[key] = value
            g.create_dataset("actions", data=ep.actions.astype(np.float64))
            dones = np.zeros(t, dtype=np.uint8)
            if ep.success:
                dones[-1] = 1
            g.create_dataset("dones", data=dones)
            g.create_dataset("rewards", data=dones.copy())  # LIBERO's sparse reward = success at the last step
            g.create_dataset("states", data=ep.states.astype(np.float64))
            g.create_dataset("robot_states", data=ep.robot_states.astype(np.float64))
            obs = g.create_group("obs")
            for key in OBS_KEYS:
                arr = ep.obs[key]
                if key in IMAGE_KEYS:
                    obs.create_dataset(
                        key, data=arr.astype(np.uint8), chunks=(1, *arr.shape[1:]), compression=compression
                    )
                else:
                    obs.create_dataset(key, data=arr.astype(np.float64))


def read_libero_hdf5(path: str | Path) -> tuple[dict[str, Any], list[DemoEpisode]]:
    """Read a LIBERO-style file back: ({problem_info, env_args, total}, episodes in demo index order)."""
    with h5py.File(path, "r") as f:
        if "data" not in f:
            raise ValueError(f"{path}: no 'data' group (not a LIBERO demo file)")
        data = f["data"]
        meta = {
            "problem_info": json.loads(data.attrs["problem_info"]),
            "env_args": json.loads(data.attrs["env_args"]),
            "total": int(data.attrs["total"]),
        }
        names = sorted(data.keys(), key=lambda n: int(n.split("_")[-1]))
        episodes = []
        for name in names:
            g = data[name]
            episodes.append(
                DemoEpisode(
                    actions=g["actions"][()],
                    states=g["states"][()],
                    robot_states=g["robot_states"][()],
                    obs={k: g["obs"][k][()] for k in OBS_KEYS},
                    success=bool(g.attrs.get("success", True)),
                    attrs={k: g.attrs[k] for k in g.attrs if k not in ("num_samples", "success")},
                )
            )
    return meta, episodes
