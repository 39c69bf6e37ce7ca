"""Where a policy closes its gripper against the expert's grasp point (openvla.eval.grasp)."""

from __future__ import annotations

import numpy as np
import pytest
from sim_fixtures import require_libero, shared_spatial_env

from openvla.eval.grasp import GraspRecord, first_grasp, tracking_slopes


def _record(start_xy: tuple[float, float], offset_xy: tuple[float, float], step: int = 12) -> GraspRecord:
    return GraspRecord(step, np.array([*offset_xy, 0.0]), np.array([*start_xy, 0.9]), 0.0)


def test_tracking_slope_is_minus_one_for_a_policy_that_closes_at_one_place():
    place = np.array([-0.2, -0.03])  # where this policy always closes, whatever the object
    starts = [(-0.21, -0.05), (-0.19, -0.07), (-0.2, -0.04), (-0.18, -0.06)]
    records = [_record(s, tuple(place - np.array(s))) for s in starts]
    np.testing.assert_allclose(tracking_slopes(records), [-1.0, -1.0], atol=1e-12)


def test_tracking_slope_is_zero_for_a_policy_that_follows_the_object():
    starts = [(-0.21, -0.05), (-0.19, -0.07), (-0.2, -0.04), (-0.18, -0.06)]
    records = [_record(s, (0.01, 0.02)) for s in starts]  # a constant bias, but it moves with the object
    np.testing.assert_allclose(tracking_slopes(records), [0.0, 0.0], atol=1e-12)


def test_tracking_slope_ignores_episodes_that_never_closed_and_needs_three_closes():
    starts = [(-0.21, -0.05), (-0.19, -0.07), (-0.2, -0.04)]
    records = [_record(s, (0.0, 0.0)) for s in starts] + [_record((0.5, 0.5), (9.0, 9.0), step=-1)]
    np.testing.assert_allclose(tracking_slopes(records), [0.0, 0.0], atol=1e-12)
    assert np.isnan(tracking_slopes(records[:2])).all()


@pytest.mark.sim
def test_first_grasp_of_the_experts_own_actions_is_at_its_grasp_point():
    """Replaying the expert's episode finds its first close within its descend tolerance of the grasp point, and
    the object lifted: the replay is the rollout, and the grasp point is the expert's."""
    require_libero()
    from openvla.eval.libero import camera_switch, episode_seed
    from openvla.sim.expert import PHASES, PickPlaceExpert
    from openvla.sim.libero_env import get_task, init_states, reset_to_state
    from openvla.sim.suites import NOOP_ACTION, NUM_NOOP_STEPS

    env = shared_spatial_env()
    state, seed = init_states(get_task("libero_spatial", 0))[0], episode_seed(0, "libero_spatial", 0, 0)
    camera_switch(env).render = False
    try:
        reset_to_state(env, state, seed)
        for _ in range(NUM_NOOP_STEPS):
            env.step(NOOP_ACTION.copy())
        expert, actions, close_step = PickPlaceExpert(env), [], -1
        for i in range(120):  # past the lift
            action = expert.act()
            if action[6] > 0 and close_step < 0:
                close_step = i
            actions.append(np.r_[action[:6], (1.0 - action[6]) / 2.0])  # the policy's gripper: 1 = open
            env.step(action)
    finally:
        camera_switch(env).render = True

    record = first_grasp(env, state, np.stack(actions), layout_seed=seed)
    assert record.step == close_step > 0
    descend_tolerance = next(p.tolerance for p in PHASES if p.name == "descend")
    assert np.linalg.norm(record.offset) < descend_tolerance
    assert record.lift > 0.05
