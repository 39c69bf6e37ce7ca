"""A scripted pick-and-place expert that reads privileged simulator state (DESIGN §9).

It solves LIBERO goals of the form ``(On <object> <target>)`` — every task of ``libero_spatial`` — with OSC_POSE
delta actions (7-D, ±1 ↔ ±0.05 m per step): move with ``a[:3] = clip((goal − eef) / 0.05 · 1.5, −1, 1)``, no
rotation, ``a[6] = −1`` open / ``+1`` close. Phases: above the grasp point (+12 cm) → descend → close and hold →
lift 15 cm → over the target → lower → open → retreat. Targets are recomputed from the live state every step, so
the expert recovers from the noise the demos recorder injects into the executed action.

Each object family needs its own grasp point: a bowl is grasped at its rim, 5 cm from its centre along the axis
the fingers close on (world y) and 2 cm above its body origin; of the two rim points the one farther from other
objects is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_DELTA = 0.05  # metres per step at |a| = 1 (OSC_POSE default output scale)
GAIN = 1.5  # proportional gain on the normalized position error
OPEN, CLOSE = -1.0, 1.0

# Grasp points per object family, relative to the body origin in world axes (fingers close along world y).
GRASP_OFFSETS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "akita_black_bowl": ((0.0, 0.05, 0.02), (0.0, -0.05, 0.02)),  # rim, either side
}
PLACE_CLEARANCE = 0.06  # gripper height above the target's body origin when the object is released


class UnsupportedTaskError(ValueError):
    """The expert has no plan for this task's goal or object."""


@dataclass(frozen=True)
class Phase:
    name: str
    gripper: float  # action[6] during the phase
    tolerance: float | None  # leave when the position error is below this (m); None = after `max_steps`
    max_steps: int  # leave after this many steps in any case


PHASES = (
    Phase("above", OPEN, 0.01, 60),
    Phase("descend", OPEN, 0.008, 40),
    Phase("close", CLOSE, None, 12),  # close and hold still until the fingers have a firm grip
    Phase("lift", CLOSE, 0.01, 40),
    Phase("over", CLOSE, 0.015, 80),
    Phase("lower", CLOSE, 0.01, 40),
    Phase("open", OPEN, None, 8),
    Phase("retreat", OPEN, 0.01, 30),
)
LIFT = 0.15  # metres
APPROACH = 0.12  # metres above the grasp point
RETREAT = 0.10  # metres


def _up(height: float) -> np.ndarray:
    return np.array([0.0, 0.0, height])


def object_family(name: str) -> str:
    """``akita_black_bowl_1`` → ``akita_black_bowl`` (LIBERO numbers object instances)."""
    return re.sub(r"_\d+$", "", name)


def pick_place_goal(env: Any) -> tuple[str, str]:
    """(object, target) of a single ``(On object target)`` goal, else ``UnsupportedTaskError``."""
    goal = env.env.parsed_problem["goal_state"]
    if len(goal) != 1 or len(goal[0]) != 3 or goal[0][0].lower() != "on":
        raise UnsupportedTaskError(f"scripted expert handles one (On object target) goal; this task's goal is {goal}")
    _, obj, target = goal[0]
    if object_family(obj) not in GRASP_OFFSETS:
        raise UnsupportedTaskError(
            f"no grasp point for object {obj!r} (family {object_family(obj)!r}); known: {', '.join(GRASP_OFFSETS)}"
        )
    return obj, target


class PickPlaceExpert:
    """Closed-loop scripted expert for one episode; call ``reset()`` after each env reset, then ``act()``."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.sim = env.env.sim
        self.obj, self.target = pick_place_goal(env)
        self._site = self.sim.model.site_name2id("gripper0_grip_site")
        self.reset()

    # --- privileged state -------------------------------------------------------------------------------------
    def body_pos(self, name: str) -> np.ndarray:
        return self.sim.data.body_xpos[self.env.env.obj_body_id[name]].copy()

    def eef(self) -> np.ndarray:
        return self.sim.data.site_xpos[self._site].copy()

    def _choose_offset(self) -> np.ndarray:
        """The grasp offset whose grasp point is farthest (in the table plane) from every other object."""
        center = self.body_pos(self.obj)
        others = [self.body_pos(n) for n in self.env.env.obj_body_id if n not in (self.obj, self.target)]
        best, best_clearance = None, -np.inf
        for offset in GRASP_OFFSETS[object_family(self.obj)]:
            point = center + np.asarray(offset)
            clearance = min((np.linalg.norm((point - o)[:2]) for o in others), default=np.inf)
            if clearance > best_clearance:
                best, best_clearance = np.asarray(offset, dtype=np.float64), clearance
        assert best is not None, "GRASP_OFFSETS entries must not be empty"
        return best

    # --- control ----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.phase_index = 0
        self.phase_steps = 0
        self.offset = self._choose_offset()
        self._anchor: np.ndarray | None = None  # eef position where a hold/relative phase started

    @property
    def done(self) -> bool:
        return self.phase_index >= len(PHASES)

    @property
    def phase(self) -> str:
        return PHASES[self.phase_index].name if not self.done else "done"

    def _goal(self, name: str) -> np.ndarray:
        eef = self.eef()
        if self._anchor is None:
            self._anchor = eef
        if name == "above":
            return self.body_pos(self.obj) + self.offset + _up(APPROACH)
        if name == "descend":
            return self.body_pos(self.obj) + self.offset
        if name in ("close", "open"):
            return self._anchor
        if name == "lift":
            return self._anchor + _up(LIFT)
        if name == "over":
            target = self.body_pos(self.target) + self.offset
            return np.array([target[0], target[1], self._anchor[2]])
        if name == "lower":
            target = self.body_pos(self.target) + self.offset
            return np.array([target[0], target[1], self.body_pos(self.target)[2] + PLACE_CLEARANCE])
        if name == "retreat":
            return self._anchor + _up(RETREAT)
        raise AssertionError(f"unknown phase {name}")

    def act(self) -> np.ndarray:
        """The expert's action (7,) float64 for the current state; advances its phase. Idle (open) when done."""
        action = np.zeros(7)
        if self.done:
            action[6] = OPEN
            return action
        phase = PHASES[self.phase_index]
        error = self._goal(phase.name) - self.eef()
        if phase.tolerance is not None and np.linalg.norm(error) < phase.tolerance:
            self._next_phase()
            return self.act()
        action[:3] = np.clip(error / MAX_DELTA * GAIN, -1.0, 1.0)
        action[6] = phase.gripper
        self.phase_steps += 1
        if self.phase_steps >= phase.max_steps:
            self._next_phase()
        return action

    def _next_phase(self) -> None:
        self.phase_index += 1
        self.phase_steps = 0
        self._anchor = None
