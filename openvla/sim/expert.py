"""A scripted pick-and-place expert that reads privileged simulator state (DESIGN §9).

It solves LIBERO goals of the form ``(On <object> <target>)``: every task of ``libero_spatial`` and the six
pick-and-place goals of ``libero_goal`` (bowl → plate / stove / cabinet top, wine bottle → cabinet top / rack,
cream cheese → bowl). The target is either another object (LIBERO's ``On`` then wants contact, the object at or
above the target's origin and their origins within 3 cm in the table plane) or a region *site* of a fixture (the
stove's cook region, the cabinet's top side, the wine rack's top region: LIBERO's ``SiteObject.under`` wants the
object's origin inside the site's box, from ``size_z − 5 mm`` to ``size_z + 10 cm`` along the site's z axis, and
contact with the fixture).

Actions are OSC_POSE deltas (7-D, ±1 ↔ ±0.05 m per step): move with ``a[:3] = clip((goal − eef) / 0.05 · 1.5, −1, 1)``,
no rotation, ``a[6] = −1`` open / ``+1`` close. Phases: above the grasp point → descend → close and hold → lift → over
the target → lower → open → retreat. Before the lift it checks that the fingers stopped on something; if they shut on
nothing it opens them while rising and approaches again (``REOPEN``). Every goal is recomputed from the live state every
step, so the expert recovers from the noise the demos recorder injects into the executed action. Once the object is
held, the goals of the carrying phases are *object* goals: the gripper moves by (where the object should be − where it
is), so a grasp that slipped or sits off-centre does not move the release point.

Each object family needs its own grasp point (relative to the body origin, world axes; the fingers close along
world y): a bowl is grasped at its rim, 5 cm from its centre along y and 2 cm above its body origin (of the two rim
points the one farther from other objects is used); the cream cheese box across its 4.3 cm width at its centre; the
wine bottle at its neck, 12 cm above its base (lower, the hand's palm hits the bottle's top and tips it over).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAX_DELTA = 0.05  # metres per step at |a| = 1 (OSC_POSE default output scale)
GAIN = 1.5  # proportional gain on the normalized position error
# The phases that bring the open hand to the grasp point. ``PickPlaceExpert.approach_gain`` slows only these: at
# GAIN the wine bottle's approach takes ~14 steps (two 8-action chunks of a policy), mostly at the ±1 limit.
APPROACH_PHASES = ("above", "descend")
OPEN, CLOSE = -1.0, 1.0


@dataclass(frozen=True)
class ObjectFamily:
    """How to hold one family of LIBERO objects."""

    grasp_offsets: tuple[tuple[float, float, float], ...]  # grasp points relative to the body origin (world axes)
    bottom: float  # height of the body origin above the object's lowest point (origin at the base → 0)
    # Where a deliberate miss closes the fingers, relative to the grasp point, far enough that they catch nothing
    # (one is drawn per miss); empty = no misses. The wine bottle's neck is missed in front or behind (x, across the
    # closing direction), as the policies miss it. A bowl has none: its thin rim lets the fingers shut as far as on
    # nothing, so an empty grasp and a held bowl look alike to the policy.
    miss_offsets: tuple[tuple[float, float, float], ...] = ()


FAMILIES: dict[str, ObjectFamily] = {
    "akita_black_bowl": ObjectFamily(((0.0, 0.05, 0.02), (0.0, -0.05, 0.02)), bottom=0.0),  # rim, either side
    "cream_cheese": ObjectFamily(  # 8 × 4.3 × 1.8 cm box, origin at its centre; grasped across its width
        # missed as the policies miss it: 3 cm to one side across the box and 2 cm high, the fingers shut above it
        ((0.0, 0.0, 0.0),),
        bottom=0.009,
        miss_offsets=((0.0, 0.03, 0.02), (0.0, -0.03, 0.02)),
    ),
    "wine_bottle": ObjectFamily(  # 15.7 cm tall, origin at the base; grasped at the neck
        ((0.0, 0.0, 0.12),), bottom=0.0, miss_offsets=((0.03, 0.0, 0.0), (-0.03, 0.0, 0.0))
    ),
}

# Height of the carried object's lowest point above the target object's origin at release.
PLACE_ON_OBJECT: dict[str, float] = {
    "plate": 0.02,
    "akita_black_bowl": 0.03,
}
DEFAULT_PLACE_ON_OBJECT = 0.03
# A region target: the object's origin this deep inside the region's box along the site's z axis, then this much
# higher in world z at release (1.5 cm above a flat region's face). On the tilted wine rack the depth moves the
# release point 1 cm up the rack's sloping plank, off its lower edge, where an upright bottle stays standing.
REGION_DEPTH = 0.01
RELEASE_ABOVE_REGION = 0.005
CARRY_CLEARANCE = 0.06  # the carried object's lowest point stays this far above its release height while moving over


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
    Phase("lift", CLOSE, 0.01, 50),
    Phase("over", CLOSE, 0.01, 80),
    Phase("lower", CLOSE, 0.008, 40),
    Phase("open", OPEN, None, 8),
    Phase("retreat", OPEN, 0.01, 30),
)
# After a grasp that caught nothing: open the fingers while rising straight up by REOPEN_RISE, then approach again.
REOPEN = Phase("reopen", OPEN, 0.01, 20)
REOPEN_RISE = 0.05  # metres
EMPTY_FINGER = 0.003  # finger joint position (m from the middle) below which the fingers closed on nothing (0.002)
LIFT = 0.15  # metres the object rises at least
APPROACH = 0.12  # metres above the grasp point
RETREAT = 0.10  # metres
DROPPED = 0.06  # while carrying: grasp point this far from the gripper → the object was dropped; grasp it again
CARRYING = ("lift", "over", "lower")
# With `release_at_rest`, `lower` also ends when the hand has come to rest: it moved less than SETTLED_MOVE over the
# last SETTLED_STEPS steps.
# A carried object can meet its target before the release point (a bowl set down on a plate touches the plate's rim
# first); without this rule the hand then pushes, blocked, until the phase's step limit, and the fingers open on a
# counter that no camera sees (15 of 20 plate demos did), which a policy cannot learn. Blocked, the hand creeps
# ≈ 0.1 mm per step; lowering freely, it moves millimetres per step.
SETTLED_STEPS = 3
SETTLED_MOVE = 0.001  # metres


def _up(height: float) -> np.ndarray:
    return np.array([0.0, 0.0, height])


def move_action(error: np.ndarray, gripper: float, gain: float = GAIN) -> np.ndarray:
    """The expert's action (7,) towards a position ``error`` (goal − gripper, m) away: proportional, saturated."""
    action = np.zeros(7)
    action[:3] = np.clip(np.asarray(error) / MAX_DELTA * gain, -1.0, 1.0)
    action[6] = gripper
    return action


def displaced_point(start: np.ndarray, approach: np.ndarray, along: float, beside: np.ndarray) -> np.ndarray:
    """A hand position a policy's first chunk may leave: ``along`` (0–1) of the way from ``start`` to the approach
    point, then ``beside`` (x, y metres) off that path in the table plane."""
    start, approach = np.asarray(start, dtype=np.float64), np.asarray(approach, dtype=np.float64)
    return start + along * (approach - start) + np.array([beside[0], beside[1], 0.0])


def object_family(name: str) -> str:
    """``akita_black_bowl_1`` → ``akita_black_bowl`` (LIBERO numbers object instances)."""
    return re.sub(r"_\d+$", "", name)


# --- geometry of region targets (pure NumPy, unit-tested without the simulator) --------------------------------
def region_point(site_pos: np.ndarray, site_mat: np.ndarray, site_size: np.ndarray, height: float) -> np.ndarray:
    """The world point ``height`` above the centre of a region site's top face, along the site's own z axis.

    LIBERO's ``SiteObject.under`` maps a point ``p`` to ``d = R (p − site_pos)`` (``R`` = the site's xmat) and
    accepts ``|d_x| < size_x``, ``|d_y| < size_y``, ``size_z − 0.005 < d_z < size_z + 0.10``; the point returned
    here has ``d = (0, 0, size_z + height)``, the middle of that box in x and y.
    """
    rot = np.asarray(site_mat, dtype=np.float64).reshape(3, 3)
    local = np.array([0.0, 0.0, float(np.asarray(site_size)[2]) + height])
    return np.asarray(site_pos, dtype=np.float64) + np.linalg.solve(rot, local)


def in_region(point: np.ndarray, site_pos: np.ndarray, site_mat: np.ndarray, site_size: np.ndarray) -> bool:
    """LIBERO's ``SiteObject.under`` test of a body origin ``point`` against a region site (contact not included)."""
    rot = np.asarray(site_mat, dtype=np.float64).reshape(3, 3)
    size = np.asarray(site_size, dtype=np.float64)
    d = rot @ (np.asarray(point, dtype=np.float64) - np.asarray(site_pos, dtype=np.float64))
    return bool(size[2] - 0.005 < d[2] < size[2] + 0.10 and np.all(np.abs(d[:2]) < size[:2]))


def on_object(point: np.ndarray, target_pos: np.ndarray) -> bool:
    """LIBERO's ``On`` test between two objects without the contact part: above, origins within 3 cm in xy."""
    p, t = np.asarray(point, dtype=np.float64), np.asarray(target_pos, dtype=np.float64)
    return bool(t[2] <= p[2] and np.linalg.norm(p[:2] - t[:2]) < 0.03)


# --- the task --------------------------------------------------------------------------------------------------
def pick_place_goal(env: Any) -> tuple[str, str]:
    """(object, target) of a single ``(On object target)`` goal, else ``UnsupportedTaskError``."""
    goal = env.env.parsed_problem["goal_state"]
    if len(goal) != 1 or len(goal[0]) != 3 or goal[0][0].lower() != "on":
        raise UnsupportedTaskError(f"scripted expert handles one (On object target) goal; this task's goal is {goal}")
    _, obj, target = goal[0]
    if object_family(obj) not in FAMILIES:
        raise UnsupportedTaskError(
            f"no grasp point for object {obj!r} (family {object_family(obj)!r}); known: {', '.join(FAMILIES)}"
        )
    inner = env.env
    if target not in inner.obj_body_id and target not in getattr(inner, "object_sites_dict", {}):
        raise UnsupportedTaskError(f"target {target!r} is neither an object nor a region site of this scene")
    return obj, target


class PickPlaceExpert:
    """Closed-loop scripted expert for one episode; call ``reset()`` after each env reset, then ``act()``.

    ``approach_gain`` replaces ``GAIN`` in the ``APPROACH_PHASES``: lower, the hand slows down sooner before the grasp
    point, so a demo holds more frames whose action is proportional to the remaining offset (not saturated at ±1).
    ``release_at_rest`` ends ``lower`` also when the hand has come to rest (``SETTLED_STEPS``).
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        # both set per attempt by the demos recorder (one expert serves every attempt of a task)
        self.approach_gain = GAIN
        self.release_at_rest = False
        self.sim = env.env.sim
        self.obj, self.target = pick_place_goal(env)
        self.family = FAMILIES[object_family(self.obj)]
        self.target_is_site = self.target not in env.env.obj_body_id
        self._site = self.sim.model.site_name2id("gripper0_grip_site")
        self.reset()

    # --- privileged state -------------------------------------------------------------------------------------
    def body_pos(self, name: str) -> np.ndarray:
        return self.sim.data.body_xpos[self.env.env.obj_body_id[name]].copy()

    def eef(self) -> np.ndarray:
        return self.sim.data.site_xpos[self._site].copy()

    def obj_pos(self) -> np.ndarray:
        return self.body_pos(self.obj)

    def approach_point(self) -> np.ndarray:
        """Where the first phase takes the hand: ``APPROACH`` above the grasp point (after ``reset``)."""
        return self.obj_pos() + self.offset + _up(APPROACH)

    def release_point(self) -> np.ndarray:
        """Where the object's body origin should be when the gripper opens (from the live target pose)."""
        if self.target_is_site:
            site = self.sim.model.site_name2id(self.target)
            size = self.sim.model.site_size[site]
            point = region_point(self.sim.data.site_xpos[site], self.sim.data.site_xmat[site], size, REGION_DEPTH)
            return point + _up(RELEASE_ABOVE_REGION + self.family.bottom)
        target = self.body_pos(self.target)
        above = PLACE_ON_OBJECT.get(object_family(self.target), DEFAULT_PLACE_ON_OBJECT)
        return target + _up(above + self.family.bottom)

    def _choose_offset(self) -> np.ndarray:
        """The grasp offset whose grasp point is farthest (in the table plane) from every other object."""
        center = self.body_pos(self.obj)
        others = [self.body_pos(n) for n in self.env.env.obj_body_id if n not in (self.obj, self.target)]
        best, best_clearance = None, -np.inf
        for offset in self.family.grasp_offsets:
            point = center + np.asarray(offset)
            clearance = min((np.linalg.norm((point - o)[:2]) for o in others), default=np.inf)
            if clearance > best_clearance:
                best, best_clearance = np.asarray(offset, dtype=np.float64), clearance
        assert best is not None, "grasp offsets must not be empty"
        return best

    # --- control ----------------------------------------------------------------------------------------------
    def reset(self, miss: np.ndarray | None = None) -> None:
        """Start an episode. ``miss`` (an offset from the grasp point) makes the first grasp a deliberate miss: the
        hand approaches and descends to ``grasp point + miss`` and closes there, then finds the object not held,
        opens while rising and grasps again. Until then ``label`` is None (see ``act``)."""
        self.phase_index = 0
        self.phase_steps = 0
        self.offset = self._choose_offset()
        self._anchor: np.ndarray | None = None  # eef position where a hold/relative phase started
        self._anchor_obj: np.ndarray | None = None  # object position at that moment
        self._carry_z: float | None = None  # object height while carried, fixed when the lift starts
        self._reopening = False  # in REOPEN, after a grasp that caught nothing (then back to the first phase)
        # the hand's last SETTLED_STEPS + 1 positions in the current `lower` phase (see `_came_to_rest`)
        self._lowering: deque[np.ndarray] = deque(maxlen=SETTLED_STEPS + 1)
        self.miss = None if miss is None else np.asarray(miss, dtype=np.float64)
        self.miss_caught = False  # the deliberate miss held the object after all (no recovery to record)
        self.regrasps = 0  # times the object was dropped and grasped again this episode
        self.missed_grasps = 0  # times the fingers closed on nothing and the expert grasped again
        self.label: np.ndarray | None = np.zeros(7)  # the action to learn for the last ``act()``; None: not a demo step

    @property
    def done(self) -> bool:
        return self.phase_index >= len(PHASES)

    @property
    def phase(self) -> str:
        return PHASES[self.phase_index].name if not self.done else "done"

    def _carry_height(self) -> float:
        """Height of the object's origin while it moves over: lifted ``LIFT`` and clear of the release point.

        Fixed when the lift starts, so the lift and the move over aim at one height."""
        if self._carry_z is None:
            self._carry_z = float(max(self.obj_pos()[2] + LIFT, self.release_point()[2] + CARRY_CLEARANCE))
        return self._carry_z

    def _goal(self, name: str) -> np.ndarray:
        eef = self.eef()
        if self._anchor is None:
            self._anchor, self._anchor_obj = eef, self.obj_pos()
        aim = self.obj_pos() + self.offset + (self.miss if self.miss is not None else 0.0)
        if name == "above":
            return aim + _up(APPROACH)
        if name == "descend":
            return aim
        if name in ("close", "open"):
            return self._anchor
        if name == "reopen":
            return self._anchor + _up(REOPEN_RISE)
        if name == "lift":  # straight up until the object is at the carry height
            assert self._anchor_obj is not None
            return self._anchor + _up(self._carry_height() - self._anchor_obj[2])
        if name == "over":  # the object moves over its release point, at the carry height
            goal = self.release_point()
            goal[2] = self._carry_height()
            return eef + goal - self.obj_pos()
        if name == "lower":  # the object moves to its release point
            return eef + self.release_point() - self.obj_pos()
        if name == "retreat":
            return self._anchor + _up(RETREAT)
        raise AssertionError(f"unknown phase {name}")

    def act(self) -> np.ndarray:
        """The expert's action (7,) float64 for the current state; advances its phase. Idle (open) when done.

        ``self.label`` receives the action a policy should learn for this state: the action itself, or None during a
        deliberate miss, until the fingers have shut on nothing. The steps of the miss are not demonstrations (a
        policy must not learn to miss, and no label for them is right: while the fingers close a correct expert
        would open them, which a policy cannot tell from a grasp that holds); the demo starts where the recovery
        does, the fingers shut on nothing beside the object.
        """
        action = np.zeros(7)
        if self.done:
            action[6] = OPEN
            self.label = action
            return action
        phase = REOPEN if self._reopening else PHASES[self.phase_index]
        if phase.name == "lift" and self.phase_steps == 0:
            if not self.held():
                self._grasp_again()
                return self.act()
            if self.miss is not None:  # the fingers caught the object anyway
                self.miss_caught, self.miss = True, None
        if phase.name in CARRYING and self.phase_steps > 0 and self._dropped():
            log.debug("expert: object dropped during %s; grasping it again", phase.name)
            self.regrasps += 1
            self._restart_approach()
            return self.act()
        error = self._goal(phase.name) - self.eef()
        if phase.tolerance is not None and np.linalg.norm(error) < phase.tolerance:
            self._next_phase()
            return self.act()
        if phase.name == "lower" and self.release_at_rest and self._came_to_rest():
            log.debug(
                "expert: the object came to rest %.3f m from its release point; opening", float(np.linalg.norm(error))
            )
            self._next_phase()
            return self.act()
        gain = self.approach_gain if phase.name in APPROACH_PHASES else GAIN
        action = move_action(error, phase.gripper, gain)
        self.label = None if self.miss is not None else action
        self.phase_steps += 1
        if self.phase_steps >= phase.max_steps:
            log.debug("expert phase %s timed out with error %.3f m", phase.name, float(np.linalg.norm(error)))
            self._next_phase()
        return action

    def held(self) -> bool:
        """The closed fingers stopped on something: each stays more than ``EMPTY_FINGER`` from the middle.

        (robosuite's pad-contact test misses the bowl, which the fingertips hold by its rim.)"""
        inner = self.env.env
        qpos = self.sim.data.qpos[inner.robots[0]._ref_gripper_joint_pos_indexes]
        return bool(np.min(np.abs(qpos)) > EMPTY_FINGER)

    def _grasp_again(self) -> None:
        """The fingers closed on nothing: open them while rising (``REOPEN``), then approach the grasp point again."""
        if self.miss is None:
            log.debug("expert: the grasp caught nothing; opening and grasping again")
        self.missed_grasps += 1
        self.miss = None
        self._reopening = True
        self._restart_approach()

    def _restart_approach(self) -> None:
        """Back to the first phase (above the grasp point), with no carry height."""
        self._enter_phase(0)
        self._carry_z = None

    def _came_to_rest(self) -> bool:
        """Called once per step of `lower`, with the step's hand position appended: True once the hand moved less than
        ``SETTLED_MOVE`` over the last ``SETTLED_STEPS`` steps."""
        self._lowering.append(self.eef())
        if len(self._lowering) <= SETTLED_STEPS:
            return False
        return bool(np.linalg.norm(self._lowering[-1] - self._lowering[0]) < SETTLED_MOVE)

    def _dropped(self) -> bool:
        """The object is no longer between the fingers (its grasp point is far from the gripper)."""
        return bool(np.linalg.norm(self.obj_pos() + self.offset - self.eef()) > DROPPED)

    def _next_phase(self) -> None:
        if self._reopening:  # back to the first phase (phase_index stayed 0)
            self._reopening = False
            self._enter_phase(self.phase_index)
        else:
            self._enter_phase(self.phase_index + 1)

    def _enter_phase(self, index: int) -> None:
        """Start phase ``index`` afresh: no step taken, no anchor, no hand positions recorded for the rest rule."""
        self.phase_index, self.phase_steps = index, 0
        self._anchor = self._anchor_obj = None
        self._lowering.clear()
