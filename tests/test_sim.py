"""LIBERO environments, the scripted expert and the demos recorder (marked ``sim``; skipped without LIBERO)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from sim_fixtures import SIM_RESOLUTION, require_libero, shared_spatial_env

from openvla.config import DemosConfig
from openvla.sim import suites
from openvla.sim.demos import attempt_seed, is_selected
from openvla.sim.libero_env import quat_to_axis_angle


@pytest.fixture
def spatial_env():
    return shared_spatial_env()


def test_suite_table_has_openvla_max_steps():
    assert suites.SUITE_MAX_STEPS == {
        "libero_spatial": 220,
        "libero_object": 280,
        "libero_goal": 300,
        "libero_10": 520,
        "libero_90": 400,
    }
    assert suites.NOOP_ACTION.tolist() == [0, 0, 0, 0, 0, 0, -1]
    with pytest.raises(ValueError, match="did you mean 'libero_spatial'"):
        suites.check_suite("libero_spatil")


def test_noise_schedule_marks_exactly_the_fraction_of_attempts():
    flags = [is_selected(k, 0.33) for k in range(100)]
    assert sum(flags) == 33
    assert not any(is_selected(k, 0.0) for k in range(10)) and all(is_selected(k, 1.0) for k in range(10))


def test_attempt_seeds_are_stable_and_distinct():
    seeds = {attempt_seed(0, 0, k) for k in range(200)}
    assert len(seeds) == 200
    assert attempt_seed(0, 0, 3) == attempt_seed(0, 0, 3) != attempt_seed(1, 0, 3)


def test_quaternion_to_axis_angle():
    # 90° about z, robosuite order (x, y, z, w)
    q = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    np.testing.assert_allclose(quat_to_axis_angle(q), [0, 0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(quat_to_axis_angle(np.array([0, 0, 0, 1.0])), 0.0)


@pytest.mark.sim
@pytest.mark.parametrize("suite", sorted(suites.SUITE_MAX_STEPS))
def test_every_suite_lists_tasks_with_language_and_fixed_initial_states(suite):
    require_libero()
    from pathlib import Path

    from openvla.sim.libero_env import get_task, init_states, num_tasks

    assert num_tasks(suite) == (90 if suite == "libero_90" else 10)
    task = get_task(suite, 0)
    assert Path(task.bddl_file).is_file() and task.language and task.max_steps == suites.SUITE_MAX_STEPS[suite]
    states = init_states(task)
    assert states.ndim == 2 and states.shape[0] == 50
    with pytest.raises(ValueError, match="out of range"):
        get_task(suite, 1000)


@pytest.mark.sim
def test_env_steps_and_renders_both_cameras(spatial_env):
    from openvla.sim.libero_env import camera_image, get_task, init_states, proprio, reset_to_state

    task = get_task("libero_spatial", 0)
    assert task.language == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    obs = reset_to_state(spatial_env, init_states(task)[0])
    obs, _reward, done, _ = spatial_env.step(suites.NOOP_ACTION.copy())
    for cam in suites.CAMERAS:
        img = camera_image(obs, cam)
        assert img.shape == (SIM_RESOLUTION, SIM_RESOLUTION, 3) and img.dtype == np.uint8
        assert img.std() > 10  # a real scene, not a blank buffer
    assert proprio(obs).shape == (8,) and not done
    # the bowl of the goal is where the fixed initial state put it (privileged state is readable)
    bowl = spatial_env.env.sim.data.body_xpos[spatial_env.env.obj_body_id["akita_black_bowl_1"]]
    assert 0.85 < bowl[2] < 1.0


@pytest.mark.sim
def test_short_demos_run_writes_a_valid_libero_hdf5(spatial_env, tmp_path):
    from openvla.sim.demos import make_demos

    cfg = DemosConfig(num_demos=1, max_attempts=2, resolution=SIM_RESOLUTION, workers=1, noise_fraction=0.0)
    out = tmp_path / "raw"
    summary = make_demos(cfg, out)
    assert summary["demos"] == 1 and summary["expert_success_rate"] > 0
    assert summary["tasks"]["0"]["min_init_distance_to_fixed_states"] > 1e-3  # not one of eval's fixed states
    files = list(out.glob("*_demo.hdf5"))
    assert [f.name for f in files] == [
        "pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate_demo.hdf5"
    ]
    with h5py.File(files[0]) as f:
        data = f["data"]
        info = json.loads(data.attrs["problem_info"])
        assert info["language_instruction"].startswith("pick up the black bowl")
        env_args = json.loads(data.attrs["env_args"])
        bddl = "libero_spatial/pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate.bddl"
        assert env_args["env_kwargs"]["bddl_file_name"] == bddl  # relative: no checkout path in the file's bytes
        demo = data["demo_0"]
        t = int(demo.attrs["num_samples"])
        assert bool(demo.attrs["success"]) and data.attrs["total"] == t and 30 < t <= 220
        assert demo["actions"].shape == (t, 7) and demo["actions"].dtype == np.float64
        assert demo["dones"].dtype == np.uint8 and demo["dones"][-1] == 1 and demo["dones"][()].sum() == 1
        assert demo["rewards"].shape == (t,) and demo["robot_states"].shape == (t, 9)
        assert demo["states"].ndim == 2 and demo["states"].shape[0] == t
        obs = demo["obs"]
        for cam in ("agentview_rgb", "eye_in_hand_rgb"):
            assert obs[cam].shape == (t, SIM_RESOLUTION, SIM_RESOLUTION, 3) and obs[cam].dtype == np.uint8
        assert obs["ee_states"].shape == (t, 6) and obs["gripper_states"].shape == (t, 2)
        assert obs["joint_states"].shape == (t, 7)
        actions = demo["actions"][()]
        assert set(np.unique(actions[:, 6])) == {-1.0, 1.0}  # the gripper opened and closed
        assert np.abs(actions[:, :6]).max() <= 1.0
        np.testing.assert_allclose(obs["ee_states"][0, :3], demo["robot_states"][0, 2:5])


@pytest.mark.sim
def test_fixed_initial_states_mode_starts_attempts_from_libero_states_below_the_limit(spatial_env):
    from openvla.sim.demos import AttemptSpec, run_attempt
    from openvla.sim.libero_env import get_task, init_states

    fixed = init_states(get_task("libero_spatial", 0))
    spec = dict(suite="libero_spatial", task_id=0, seed=0, resolution=SIM_RESOLUTION, noise_fraction=0.0)
    for attempt, index in ((1, 1), (31, 1), (29, 29)):
        result = run_attempt(
            AttemptSpec(**spec, attempt=attempt, noise_std=0.0, max_steps=3, init_states="fixed", fixed_init_limit=30)
        )
        assert result.steps == 3 and not result.success and result.episode is None
        np.testing.assert_allclose(result.init_state[1:], fixed[index][1:], atol=1e-9)  # [0] is the sim time


def test_displaced_point_is_partway_to_the_approach_point_then_beside_the_path():
    from openvla.sim.expert import displaced_point

    start, approach = np.array([-0.2, 0.0, 1.18]), np.array([-0.2, -0.05, 1.14])
    np.testing.assert_allclose(displaced_point(start, approach, 0.0, np.zeros(2)), start)
    np.testing.assert_allclose(displaced_point(start, approach, 1.0, np.zeros(2)), approach)
    point = displaced_point(start, approach, 0.5, np.array([0.03, -0.01]))
    np.testing.assert_allclose(point, [-0.17, -0.035, 1.16])  # halfway, then 3 cm in x and -1 cm in y, same height


def test_move_action_is_proportional_to_the_offset_with_the_given_gain_then_saturates():
    from openvla.sim.expert import CLOSE, GAIN, move_action

    action = move_action(np.array([0.01, -0.02, 0.2]), CLOSE)
    np.testing.assert_allclose(action, [0.01 / 0.05 * GAIN, -0.02 / 0.05 * GAIN, 1.0, 0, 0, 0, CLOSE])
    slow = move_action(np.array([0.01, -0.02, 0.2]), CLOSE, gain=0.5)
    np.testing.assert_allclose(slow[:3], [0.1, -0.2, 1.0])  # 2 cm away: -0.2 at gain 0.5, -0.6 at 1.5


@pytest.mark.sim
@pytest.mark.slow
def test_a_lower_approach_gain_closes_later_and_still_succeeds(spatial_env):
    from openvla.sim.demos import AttemptSpec, run_attempt

    spec = dict(suite="libero_spatial", task_id=0, seed=0, resolution=SIM_RESOLUTION, noise_fraction=0.0,
                noise_std=0.0, max_steps=220, attempt=0)  # fmt: skip
    fast, slow = run_attempt(AttemptSpec(**spec)), run_attempt(AttemptSpec(**spec, approach_gain=0.5))
    assert fast.success and slow.success
    first_close = [int(np.argmax(r.episode.actions[:, 6] > 0)) for r in (fast, slow)]
    assert first_close[1] >= first_close[0] + 5, first_close  # more frames before the grasp
    saturated = [
        np.mean(np.abs(r.episode.actions[:c, :3]) > 0.99) for r, c in zip((fast, slow), first_close, strict=True)
    ]
    assert saturated[1] < saturated[0], saturated  # more of them proportional to the remaining offset
    np.testing.assert_array_equal(fast.init_state, slow.init_state)


@pytest.mark.sim
def test_displace_hand_moves_the_open_hand_unrecorded_to_its_point(spatial_env):
    from openvla.sim.demos import DISPLACE_TOLERANCE, displace_hand
    from openvla.sim.expert import PickPlaceExpert, displaced_point
    from openvla.sim.libero_env import get_task, init_states, reset_to_state, settle

    reset_to_state(spatial_env, init_states(get_task("libero_spatial", 0))[0], layout_seed=0)
    settle(spatial_env, suites.NUM_NOOP_STEPS)
    expert = PickPlaceExpert(spatial_env)
    start, approach = expert.eef(), expert.approach_point()
    draws = np.random.default_rng(5)
    goal = displaced_point(start, approach, draws.uniform(0.0, 1.0), draws.uniform(-0.04, 0.04, 2))
    obs = displace_hand(spatial_env, expert, np.random.default_rng(5), 0.04)
    assert obs is not None and np.linalg.norm(goal - start) > 0.03  # it had somewhere to go
    assert np.linalg.norm(expert.eef() - goal) < DISPLACE_TOLERANCE
    assert np.min(np.abs(obs["robot0_gripper_qpos"])) > 0.03  # the fingers stayed open (≈ 0.04 each)


@pytest.mark.sim
@pytest.mark.slow
def test_a_displaced_attempt_starts_off_the_clean_path_and_still_succeeds(spatial_env):
    from openvla.sim.demos import AttemptSpec, run_attempt

    spec = dict(suite="libero_spatial", task_id=0, seed=0, resolution=SIM_RESOLUTION, noise_fraction=0.0,
                noise_std=0.0, max_steps=220, attempt=0)  # fmt: skip
    clean, displaced = run_attempt(AttemptSpec(**spec)), run_attempt(AttemptSpec(**spec, displaced=True))
    assert clean.success and displaced.success
    assert displaced.episode.attrs["displaced"] and "displaced" not in clean.episode.attrs
    first = [r.episode.obs["ee_states"][0, :3] for r in (clean, displaced)]
    assert np.linalg.norm(first[1] - first[0]) > 0.01  # the demo starts where the unrecorded move left the hand
    np.testing.assert_array_equal(clean.init_state, displaced.init_state)  # one scene, two starts
