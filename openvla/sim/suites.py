"""Facts about the LIBERO suites that evaluation depends on (DESIGN §11), kept apart from the logic.

Max steps per suite are OpenVLA's: the longest training demonstration of the suite plus a margin. Every episode
starts with ``NUM_NOOP_STEPS`` no-op steps while the objects, dropped from slightly above the table, settle.
"""

from __future__ import annotations

import difflib

import numpy as np

SUITE_MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,  # longest training demo 193 steps
    "libero_object": 280,  # 254
    "libero_goal": 300,  # 270
    "libero_10": 520,  # 505
    "libero_90": 400,  # 373
}

NUM_NOOP_STEPS = 10  # waited before the policy acts (OpenVLA's LIBERO protocol)
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)  # no motion, gripper open (LIBERO convention)

CAMERAS = ("agentview", "robot0_eye_in_hand")  # LIBERO's two cameras; the policy sees agentview


def check_suite(suite: str) -> str:
    """Return ``suite`` if it is a known LIBERO suite, else raise a ``ValueError`` with a did-you-mean."""
    if suite not in SUITE_MAX_STEPS:
        close = difflib.get_close_matches(suite, SUITE_MAX_STEPS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown LIBERO suite {suite!r}{hint} (known: {', '.join(SUITE_MAX_STEPS)})")
    return suite


def max_steps(suite: str) -> int:
    """Policy steps allowed per episode of ``suite`` (after the no-op steps)."""
    return SUITE_MAX_STEPS[check_suite(suite)]
