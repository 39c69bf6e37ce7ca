"""The Open X-Embodiment registry (issue 15): every dataset of OpenVLA's and OpenVLA-OFT's registries as data plus
its standardization transform, every mixture with its weights, DROID's own rules.

Each transform runs on a synthetic trajectory in that dataset's raw feature layout (tests/oxe_synthetic.py), then
through the loader's ``restructure``: the test checks the output keys (cameras, proprio), shapes, dtype, that the
gripper ends in {0, 1} with 1 = open and follows the known pattern whatever the raw convention (relative commands
with no-op steps, closedness, ±1, booleans, continuous positions), and the step drops (Bridge drops its all-zero
first step and the last one when relabelling).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from oxe_synthetic import SPECS, T, expected_gripper, synthetic_raw

from openvla.data import oxe_configs, oxe_mixtures, registry

# Counts read from the upstream registries (openvla/openvla prismatic/vla/datasets/rlds/oxe/{configs,transforms,
# mixtures}.py and OpenVLA-OFT's copies): the dataset names below must all be registered here.
OPENVLA_DATASETS = {
    "fractal20220817_data", "kuka", "bridge_oxe", "bridge_orig", "bridge_dataset", "taco_play", "jaco_play",
    "berkeley_cable_routing", "roboturk", "nyu_door_opening_surprising_effectiveness", "viola",
    "berkeley_autolab_ur5", "toto", "language_table", "columbia_cairlab_pusht_real",
    "stanford_kuka_multimodal_dataset_converted_externally_to_rlds", "nyu_rot_dataset_converted_externally_to_rlds",
    "stanford_hydra_dataset_converted_externally_to_rlds", "austin_buds_dataset_converted_externally_to_rlds",
    "nyu_franka_play_dataset_converted_externally_to_rlds", "maniskill_dataset_converted_externally_to_rlds",
    "furniture_bench_dataset_converted_externally_to_rlds",
    "cmu_franka_exploration_dataset_converted_externally_to_rlds", "ucsd_kitchen_dataset_converted_externally_to_rlds",
    "ucsd_pick_and_place_dataset_converted_externally_to_rlds", "austin_sailor_dataset_converted_externally_to_rlds",
    "austin_sirius_dataset_converted_externally_to_rlds", "bc_z",
    "utokyo_pr2_opening_fridge_converted_externally_to_rlds",
    "utokyo_pr2_tabletop_manipulation_converted_externally_to_rlds",
    "utokyo_xarm_pick_and_place_converted_externally_to_rlds", "utokyo_xarm_bimanual_converted_externally_to_rlds",
    "robo_net", "berkeley_mvp_converted_externally_to_rlds", "berkeley_rpt_converted_externally_to_rlds",
    "kaist_nonprehensile_converted_externally_to_rlds", "stanford_mask_vit_converted_externally_to_rlds",
    "tokyo_u_lsmo_converted_externally_to_rlds", "dlr_sara_pour_converted_externally_to_rlds",
    "dlr_sara_grid_clamp_converted_externally_to_rlds", "dlr_edan_shared_control_converted_externally_to_rlds",
    "asu_table_top_converted_externally_to_rlds", "stanford_robocook_converted_externally_to_rlds",
    "imperialcollege_sawyer_wrist_cam", "iamlab_cmu_pickup_insert_converted_externally_to_rlds", "uiuc_d3field",
    "utaustin_mutex", "berkeley_fanuc_manipulation", "cmu_playing_with_food", "cmu_play_fusion", "cmu_stretch",
    "berkeley_gnm_recon", "berkeley_gnm_cory_hall", "berkeley_gnm_sac_son", "droid", "fmb_dataset", "dobbe",
    "roboset", "rh20t", "tdroid_carrot_in_bowl", "tdroid_pour_corn_in_pot", "tdroid_flip_pot_upright",
    "tdroid_move_object_onto_plate", "tdroid_knock_object_over", "tdroid_cover_object_with_towel", "droid_wipe",
    "libero_spatial_no_noops", "libero_object_no_noops", "libero_goal_no_noops", "libero_10_no_noops",
}  # fmt: skip
OFT_EXTRA_DATASETS = {
    "libero_4_task_suites_no_noops", "aloha1_fold_shorts_20_demos", "aloha1_fold_shirt_30_demos",
    "aloha1_scoop_X_into_bowl_45_demos", "aloha1_put_X_into_pot_300_demos",
}  # fmt: skip


def test_registry_holds_every_upstream_dataset_and_mixture():
    assert len(OPENVLA_DATASETS) == 70 and len(OFT_EXTRA_DATASETS) == 5
    names = set(oxe_configs.DATASETS)  # the shipped table (other tests may register more in this process)
    assert names <= set(registry.dataset_names())
    assert names >= OPENVLA_DATASETS | OFT_EXTRA_DATASETS
    assert names - OPENVLA_DATASETS - OFT_EXTRA_DATASETS == {"libero_embedded"}
    # 18 named mixtures in OpenVLA's release (+ "libero_mix" in a later upstream revision), 5 more in OFT.
    assert len(oxe_mixtures.OPENVLA_MIXTURES) == 19 and len(oxe_mixtures.OFT_EXTRA_MIXTURES) == 5
    assert len(oxe_mixtures.MIXTURES) == 30 and set(oxe_mixtures.MIXTURES) <= set(registry.mixture_names())
    assert set(oxe_mixtures.OPENVLA_MIXTURES) | set(oxe_mixtures.OFT_EXTRA_MIXTURES) <= set(oxe_mixtures.MIXTURES)
    for name in oxe_mixtures.MIXTURES:  # every shipped mixture names shipped datasets with positive weights
        entries = registry.get_mixture(name)
        assert entries and all(d in names and w > 0 for d, w in entries), name
    transforms = {config.standardize for config in oxe_configs.DATASETS.values()}
    assert len(transforms) == 52  # distinct standardization functions behind the 76 configs


def test_magic_soup_weights_are_openvlas():
    soup = dict(registry.get_mixture("oxe_magic_soup_plus_minus"))
    assert len(soup) == 25 and "language_table" not in soup and "droid" not in soup
    assert soup["fractal20220817_data"] == 1.0 and soup["kuka"] == pytest.approx(0.8341046294)
    assert soup["nyu_franka_play_dataset_converted_externally_to_rlds"] == 3.0 and soup["bc_z"] == 0.2
    plus = dict(registry.get_mixture("oxe_magic_soup_plus"))
    assert len(plus) == 27 and plus["droid"] == 0.06 and plus["fractal20220817_data"] == pytest.approx(0.54087122203)
    assert len(registry.get_mixture("oxe_magic_soup")) == 23 and dict(registry.get_mixture("oxe_magic_soup"))[
        "language_table"
    ] == pytest.approx(0.1)
    franka = registry.get_mixture("rtx_franka")
    assert len(franka) == 28 and franka.count(("taco_play", 1.0)) == 1 and ("taco_play", 2.0) in franka
    assert registry.get_mixture("rtx")[:2] == [("fractal20220817_data", 0.54087122203), ("kuka", 0.8341046294)]


def test_registry_modules_import_without_tensorflow_and_without_a_cycle():
    import subprocess

    code = (
        "import sys; import openvla.data.oxe_configs, openvla.data.oxe_mixtures; "
        "assert 'openvla.data.registry' not in sys.modules, 'the tables import the registry'; "
        "import openvla.data.registry as r, openvla.data.statistics, openvla.data.normalization, "
        "openvla.data.traj_transforms, openvla.data.standardize, openvla.data.oxe_transforms; "
        "assert r.get_dataset_config('droid').frame_filter is not None; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def to_tf(value):
    import tensorflow as tf

    if isinstance(value, dict):
        return {k: to_tf(v) for k, v in value.items()}
    if value.dtype == object:
        return tf.constant(list(value), tf.string)
    return tf.constant(value)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_transform_on_a_synthetic_trajectory_of_its_layout(name):
    from openvla.data.loader import restructure
    from openvla.tf_import import import_tensorflow

    tf = import_tensorflow()
    config = registry.get_dataset_config(name)
    spec = SPECS[name]
    traj = config.standardize(to_tf(synthetic_raw(spec, seed=len(name))))
    cameras = [c for c in ("primary", "secondary", "wrist") if config.image_obs_keys.get(c)]
    out = restructure(config, name, cameras)(traj)

    start, end = spec["drop"]
    length = T - start - end
    action = out["action"].numpy()
    assert out["action"].dtype == tf.float32 and action.shape == (length, config.action_dim)
    assert np.isfinite(action).all()
    proprio = out["observation"]["proprio"].numpy()
    assert proprio.shape == (length, spec["proprio"]) and np.isfinite(proprio).all()
    for camera in cameras:
        images = out["observation"][f"image_{camera}"].numpy()
        assert images.shape == (length,) and all(len(x) > 0 for x in images)
    instructions = out["task"]["language_instruction"].numpy()
    assert instructions.shape == (length,) and all(x.decode() in ("pick up the cup", "push t") for x in instructions)
    # Gripper dims (last of each arm) are not normalized, end in {0, 1} and follow the pattern (1 = open).
    mask = config.normalization_mask
    grip_dims = spec["grip_dims"] or [i for i, m in enumerate(mask) if not m]
    assert [i for i, m in enumerate(mask) if not m] == list(grip_dims)
    for dim in grip_dims:
        np.testing.assert_array_equal(action[:, dim], expected_gripper(spec), err_msg=f"{name} gripper dim {dim}")
    for key, role in ((k, r) for r, k in config.depth_obs_keys.items() if k):
        assert key in traj["observation"], (name, role, key)


def test_bridge_relabels_movement_from_state_deltas_and_drops_the_first_step():
    from openvla.tf_import import import_tensorflow

    import_tensorflow()
    raw = synthetic_raw(SPECS["bridge_orig"], seed=1)
    out = registry.get_dataset_config("bridge_orig").standardize(to_tf(raw))
    state = raw["observation"]["state"]
    np.testing.assert_allclose(out["action"].numpy()[:, :6], state[2:, :6] - state[1:-1, :6], atol=1e-6)


def test_quaternion_to_euler_matches_known_rotations():
    from openvla.data.oxe_transforms import quaternion_to_euler
    from openvla.tf_import import import_tensorflow

    import_tensorflow()
    half = np.sqrt(0.5)
    quats = np.array([[0, 0, 0, 1], [0, 0, half, half], [half, 0, 0, half], [0, half, 0, half]], np.float32)
    expected = np.array([[0, 0, 0], [0, 0, np.pi / 2], [np.pi / 2, 0, 0], [0, np.pi / 2, 0]], np.float32)
    np.testing.assert_allclose(quaternion_to_euler(quats).numpy(), expected, atol=1e-3)


def test_droid_action_space_and_zero_action_filter():
    from openvla.data.normalization import normalize_tf
    from openvla.data.oxe_transforms import DROID_ACTION_Q01, DROID_ACTION_Q99, zero_action_filter
    from openvla.tf_import import import_tensorflow

    tf = import_tensorflow()
    config = registry.get_dataset_config("droid")
    raw = synthetic_raw(SPECS["droid"], seed=3)
    out = config.standardize(to_tf(raw))
    velocity = raw["action_dict"]["cartesian_velocity"]
    np.testing.assert_allclose(out["action"].numpy()[:, :6], velocity, atol=1e-6)  # base frame, as commanded
    np.testing.assert_array_equal(out["action"].numpy()[:, 6], 1.0 - raw["action_dict"]["gripper_position"][:, 0])
    np.testing.assert_allclose(
        out["observation"]["proprio"].numpy(),
        np.concatenate([raw["observation"]["cartesian_position"], raw["observation"]["gripper_position"]], 1),
    )
    views = {out["observation"][k].numpy()[0] for k in ("exterior_image_1_left", "exterior_image_2_left")}
    assert len(views) == 1  # synthetic views are equal bytes; the swap keeps both keys filled

    # The filter sees normalized frames: a zero movement (whatever the gripper) is dropped, any movement kept.
    stats = {
        "q01": [*DROID_ACTION_Q01, 0.0],
        "q99": [*DROID_ACTION_Q99, 1.0],
        "min": [-1.0] * 6 + [0.0],
        "max": [1.0] * 6 + [1.0],
        "mean": [0.0] * 7,
        "std": [1.0] * 7,
        "mask": [True] * 6 + [False],
    }
    actions = np.zeros((4, 7), np.float32)
    actions[1, 6] = 1.0  # gripper only: still a no-op
    actions[2, 0] = 0.01  # a small movement
    actions[3, 5] = -0.2
    normalized = normalize_tf(tf.constant(actions), stats)
    keep = [bool(zero_action_filter({"action": normalized[i : i + 1]}, stats)) for i in range(4)]
    assert keep == [False, False, True, True]
    keep_default = [bool(zero_action_filter({"action": normalized[i : i + 1]})) for i in range(4)]
    assert keep_default == keep  # DROID's published bounds are the default
    assert config.frame_filter is zero_action_filter


def test_the_loader_applies_a_datasets_frame_filter(tmp_path):
    """A config's ``frame_filter`` (DROID's zero-action rule) drops frames in the training pipeline itself."""
    from data_fixtures import write_npz_episodes

    from openvla.config import ConvertConfig
    from openvla.data import DatasetConfig, compute_dataset_statistics, make_dataset, register_dataset
    from openvla.data.convert import convert_dataset
    from openvla.data.standardize import identity_transform
    from openvla.tf_import import import_tensorflow

    tf = import_tensorflow()
    write_npz_episodes(tmp_path / "raw", 3, 6, size=8, wrist=False)
    cfg = ConvertConfig(input_format="npz", dataset_name="filtered_robot", rotate_180=False, drop_noops=False)
    convert_dataset(tmp_path / "raw", tmp_path / "rlds", cfg)

    def moves_right(frame, action_stats):  # keep frames whose normalized first action dim is positive
        return tf.reduce_all(frame["action"][..., 0] > 0.0)

    common = {"image_obs_keys": {"primary": "image"}, "state_obs_keys": ("state",), "standardize": identity_transform}
    register_dataset("filtered_robot", DatasetConfig(**common, frame_filter=moves_right), overwrite=True)
    register_dataset("unfiltered_robot", DatasetConfig(**common, builder_names=("filtered_robot",)), overwrite=True)
    stats = compute_dataset_statistics(str(tmp_path / "rlds"), "filtered_robot")

    def first_dims(name: str) -> list[float]:
        frames = make_dataset(
            tmp_path / "rlds", name, statistics={name: stats}, train=False, image_size=8, shuffle_buffer=1,
            image_augmentation=False, seed=0, num_parallel_calls=1, num_parallel_reads=1,
        )  # fmt: skip
        return [float(np.asarray(f["action"]).reshape(-1)[0]) for f in frames.as_numpy_iterator()]

    everything, kept = first_dims("unfiltered_robot"), first_dims("filtered_robot")
    assert kept == [v for v in everything if v > 0.0]
    assert 0 < len(kept) < len(everything)
