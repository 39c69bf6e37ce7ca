"""Where a policy closes its gripper, measured against the scripted expert's grasp point (embedded default).

Success counts say *that* a pick-and-place policy fails; this says *where*: an episode's executed actions are
replayed from its initial state (no rendering: the physics alone, so the replay is the rollout) and, at the first
step that commands the gripper shut, the gripper's position is compared with the grasp point the expert
(``openvla.sim.expert``) would use for the same object — its body origin plus the family's grasp offset. Over
many initial states, regressing that offset on the object's starting position tells whether the policy tracks the
object (slope 0) or runs one trajectory whatever the scene (slope −1: the offset grows exactly as the object
moves away from where the policy always goes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GraspRecord:
    """The first gripper close of one episode."""

    step: int  # policy step of the first close command (-1: never closed)
    offset: np.ndarray  # (3,) gripper − grasp point at that step, metres, world axes (NaN when it never closed)
    object_start: np.ndarray  # (3,) the object's body origin when the policy took over
    lift: float  # the highest the object's origin got above its start (m): a few cm or more = it was picked up


def first_grasp(env: Any, init_state: np.ndarray, actions: np.ndarray, *, layout_seed: int | None) -> GraspRecord:
    """Replay ``actions`` (the policy's convention, as ``run_episode`` records them) and find the first close.

    The grasp point is recomputed at the close step from the live object pose with the offset the expert chooses
    for this scene (for a bowl, the rim side farther from other objects).
    """
    from openvla.eval.libero import camera_switch, libero_gripper
    from openvla.sim.expert import PickPlaceExpert
    from openvla.sim.libero_env import reset_to_state, settle
    from openvla.sim.suites import NUM_NOOP_STEPS

    switch = camera_switch(env)
    switch.render = False
    try:
        reset_to_state(env, init_state, layout_seed)
        settle(env, NUM_NOOP_STEPS)  # the no-op steps every episode starts with
        expert = PickPlaceExpert(env)  # its grasp offset for this scene
        start = expert.obj_pos()
        step, offset, top = -1, np.full(3, np.nan), start[2]
        for i, action in enumerate(np.asarray(actions)):
            command = libero_gripper(action)
            if command[6] > 0 and step < 0:  # LIBERO's +1 = close
                step, offset = i, expert.eef() - (expert.obj_pos() + expert.offset)
            env.step(command)
            top = max(top, expert.obj_pos()[2])
    finally:
        switch.render = True
    return GraspRecord(step, offset, start, float(top - start[2]))


def tracking_slopes(records: list[GraspRecord]) -> np.ndarray:
    """Least-squares slope, per world axis (x, y), of the close offset on the object's starting position.

    0: the policy's grasp follows the object; −1: it closes at the same place whatever the object's position.
    NaN for an axis without spread (fewer than 3 closes, or all objects at one coordinate).
    """
    closed = [r for r in records if r.step >= 0]
    slopes = np.full(2, np.nan)
    if len(closed) < 3:
        return slopes
    start = np.stack([r.object_start for r in closed])
    offset = np.stack([r.offset for r in closed])
    for axis in range(2):
        x = start[:, axis] - start[:, axis].mean()
        if np.ptp(x) > 0:
            slopes[axis] = float(x @ (offset[:, axis] - offset[:, axis].mean()) / (x @ x))
    return slopes
