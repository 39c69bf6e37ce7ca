"""The shipped dataset configs: a data table (the logic is in ``registry.py``, the transforms in
``oxe_transforms.py`` / ``standardize.py``, the mixtures in ``oxe_mixtures.py``).

Every dataset of OpenVLA's Open X-Embodiment registry and of OpenVLA-OFT's additions (LIBERO, ALOHA): cameras
(primary / secondary / wrist), depth cameras, the state keys concatenated into proprio (``None`` = one zero dim, as
OpenVLA pads to 8), the proprio layout and the action encoding. Camera and state key names are the datasets' own (as
OpenVLA's registry reads them). Our additions: ``libero_embedded`` (made by the ``demos`` + ``convert`` stages),
``bridge_orig`` also finding the ``bridge_dataset`` builder directory.

Datasets that OpenVLA registers with a transform but no config (the ``ppgm`` conversions) and its
``expert_demos`` example are left out.
"""

from __future__ import annotations

from openvla.data import oxe_transforms as t
from openvla.data.dataset_config import DatasetConfig
from openvla.data.standardize import bridge_orig_transform, libero_transform, rt1_transform


def _config(
    primary: str | None,
    secondary: str | None,
    wrist: str | None,
    state: tuple[str | None, ...],
    transform,
    state_encoding: str = "POS_EULER",
    action_encoding: str = "EEF_POS",
    depth: tuple[str | None, str | None, str | None] = (None, None, None),
    **kwargs,
) -> DatasetConfig:
    """One row of the table: cameras in role order (primary, secondary, wrist), state keys, transform."""
    return DatasetConfig(
        image_obs_keys={"primary": primary, "secondary": secondary, "wrist": wrist},
        depth_obs_keys=dict(zip(("primary", "secondary", "wrist"), depth, strict=True)),
        state_obs_keys=state,
        standardize=transform,
        state_encoding=state_encoding,
        action_encoding=action_encoding,
        **kwargs,
    )


_NO_STATE = (None,) * 8  # StateEncoding NONE: 8 zero dims
_EEF_PAD_GRIP = ("eef_state", None, "gripper_state")  # EEF 6 + pad + gripper 1

_LIBERO = DatasetConfig(
    image_obs_keys={"primary": "image", "secondary": None, "wrist": "wrist_image"},
    state_obs_keys=("EEF_state", "gripper_state"),  # 6 + 2 → proprio 8-D
    standardize=libero_transform,
    action_encoding="EEF_POS",
    state_encoding="POS_AXISANGLE",
    extra={"control_hz": 20},
)

_TDROID = _config("static_image", None, None, ("EEF_state", None, "gripper_state"), t.tdroid_transform,
                  depth=("static_depth_image", None, None), extra={"control_hz": 5})  # fmt: skip

_ALOHA = DatasetConfig(
    image_obs_keys={"primary": "image", "secondary": None, "left_wrist": "left_wrist_image",
                    "right_wrist": "right_wrist_image"},
    state_obs_keys=("state",),  # 14: 2 × (6 joints + gripper)
    standardize=t.aloha_transform,
    state_encoding="JOINT_BIMANUAL",
    action_encoding="JOINT_POS_BIMANUAL",
)  # fmt: skip

_GNM = _config(None, None, "image", ("state", None, None), t.gnm_transform)

# fmt: off
DATASETS: dict[str, DatasetConfig] = {
    # --- Open X-Embodiment (OpenVLA's registry) ---
    "fractal20220817_data": _config("image", None, None, ("base_pose_tool_reached", "gripper_closed"), rt1_transform,
                                    "POS_QUAT", extra={"control_hz": 3}),
    "kuka": _config("image", None, None, ("clip_function_input/base_pose_tool_reached", "gripper_closed"),
                    t.kuka_transform, "POS_QUAT"),
    "bridge_oxe": _config("image", "image_1", None, ("EEF_state", None, "gripper_state"), t.bridge_oxe_transform),
    # Our copy of BridgeData V2; the Octo debug set in ../shared is named `bridge_dataset`, same layout. Proprio 7-D
    # (OFT's layout, no pad), as this repository has always trained it.
    "bridge_orig": DatasetConfig(
        image_obs_keys={"primary": "image_0", "secondary": "image_1", "wrist": None},
        state_obs_keys=("EEF_state", "gripper_state"),
        standardize=bridge_orig_transform,
        builder_names=("bridge_orig", "bridge_dataset"),
        action_encoding="EEF_POS",
        state_encoding="POS_EULER",
        extra={"control_hz": 5},
    ),
    "bridge_dataset": _config("image_0", "image_1", None, ("EEF_state", None, "gripper_state"),
                              bridge_orig_transform, extra={"control_hz": 5}),
    "taco_play": _config("rgb_static", None, "rgb_gripper", ("state_eef", None, "state_gripper"),
                         t.taco_play_transform, depth=("depth_static", None, "depth_gripper")),
    "jaco_play": _config("image", None, "image_wrist", ("state_eef", None, "state_gripper"), t.jaco_play_transform),
    "berkeley_cable_routing": _config("image", "top_image", "wrist45_image", ("robot_state", None),
                                      t.berkeley_cable_routing_transform, "JOINT"),
    "roboturk": _config("front_rgb", None, None, _NO_STATE, t.roboturk_transform, "NONE"),
    "nyu_door_opening_surprising_effectiveness": _config(None, None, "image", _NO_STATE,
                                                         t.relative_gripper_transform, "NONE"),
    "viola": _config("agentview_rgb", None, "eye_in_hand_rgb", ("joint_states", "gripper_states"),
                     t.viola_transform, "JOINT"),
    "berkeley_autolab_ur5": _config("image", None, "hand_image", ("state",), t.berkeley_autolab_ur5_transform,
                                    "POS_QUAT", depth=("depth", None, None)),
    "toto": _config("image", None, None, ("state", None), t.open_gripper_transform, "JOINT"),
    "language_table": _config("rgb", None, None, ("effector_translation", None, None, None, None, None, None),
                              t.language_table_transform),
    "columbia_cairlab_pusht_real": _config("image", None, "wrist_image",
                                           ("robot_state", None, None, None, None, None, None), t.pusht_transform),
    "stanford_kuka_multimodal_dataset_converted_externally_to_rlds": _config(
        "image", None, None, ("ee_position", "ee_orientation", None), t.stanford_kuka_multimodal_transform,
        "POS_QUAT", depth=("depth_image", None, None)),
    "nyu_rot_dataset_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP, t.nyu_rot_transform),
    "stanford_hydra_dataset_converted_externally_to_rlds": _config("image", None, "wrist_image", _EEF_PAD_GRIP,
                                                                   t.stanford_hydra_transform),
    "austin_buds_dataset_converted_externally_to_rlds": _config("image", None, "wrist_image", ("state",),
                                                                t.austin_buds_transform, "JOINT"),
    "nyu_franka_play_dataset_converted_externally_to_rlds": _config(
        "image", "image_additional_view", None, ("eef_state", None, None), t.nyu_franka_play_transform,
        depth=("depth", "depth_additional_view", None)),
    "maniskill_dataset_converted_externally_to_rlds": _config(
        "image", None, "wrist_image", ("tcp_pose", "gripper_state"), t.maniskill_transform, "POS_QUAT",
        depth=("depth", None, "wrist_depth")),
    "furniture_bench_dataset_converted_externally_to_rlds": _config("image", None, "wrist_image", ("state",),
                                                                    t.furniture_bench_transform, "POS_QUAT"),
    "cmu_franka_exploration_dataset_converted_externally_to_rlds": _config(
        "highres_image", None, None, _NO_STATE, t.drop_last_action_dim_transform, "NONE"),
    "ucsd_kitchen_dataset_converted_externally_to_rlds": _config("image", None, None, ("joint_state", None),
                                                                 t.ucsd_kitchen_transform, "JOINT"),
    "ucsd_pick_and_place_dataset_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP,
                                                                        t.ucsd_pick_place_transform),
    "austin_sailor_dataset_converted_externally_to_rlds": _config("image", None, "wrist_image", ("state",),
                                                                  t.clip_invert_gripper_transform, "POS_QUAT"),
    "austin_sirius_dataset_converted_externally_to_rlds": _config("image", None, "wrist_image", ("state",),
                                                                  t.clip_invert_gripper_transform, "POS_QUAT"),
    "bc_z": _config("image", None, None, ("present/xyz", "present/axis_angle", None, "present/sensed_close"),
                    t.bc_z_transform),
    "utokyo_pr2_opening_fridge_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP,
                                                                      t.tokyo_pr2_transform),
    "utokyo_pr2_tabletop_manipulation_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP,
                                                                             t.tokyo_pr2_transform),
    "utokyo_xarm_pick_and_place_converted_externally_to_rlds": _config(
        "image", "image2", "hand_image", ("end_effector_pose", None, None), t.identity_oxe_transform),
    "utokyo_xarm_bimanual_converted_externally_to_rlds": _config("image", None, None, ("pose_r", None, None),
                                                                 t.utokyo_xarm_bimanual_transform),
    "robo_net": _config("image", "image1", None, _EEF_PAD_GRIP, t.robo_net_transform),
    "berkeley_mvp_converted_externally_to_rlds": _config(None, None, "hand_image", ("pose", "gripper"),
                                                         t.identity_oxe_transform, "POS_QUAT", "JOINT_POS"),
    "berkeley_rpt_converted_externally_to_rlds": _config(None, None, "hand_image", ("joint_pos", "gripper"),
                                                         t.identity_oxe_transform, "JOINT", "JOINT_POS"),
    "kaist_nonprehensile_converted_externally_to_rlds": _config("image", None, None, ("state", None),
                                                                t.kaist_nonprehensile_transform, "POS_QUAT"),
    "stanford_mask_vit_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP,
                                                              t.stanford_mask_vit_transform),
    "tokyo_u_lsmo_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP,
                                                         t.eef_gripper_state_transform),
    "dlr_sara_pour_converted_externally_to_rlds": _config("image", None, None, ("state", None, None),
                                                          t.identity_oxe_transform),
    "dlr_sara_grid_clamp_converted_externally_to_rlds": _config("image", None, None, ("state", None, None),
                                                                t.dlr_sara_grid_clamp_transform),
    "dlr_edan_shared_control_converted_externally_to_rlds": _config("image", None, None, ("state", None),
                                                                    t.invert_gripper_transform),
    "asu_table_top_converted_externally_to_rlds": _config("image", None, None, _EEF_PAD_GRIP,
                                                          t.asu_table_top_transform),
    "stanford_robocook_converted_externally_to_rlds": _config("image_1", "image_2", None, _EEF_PAD_GRIP,
                                                              t.eef_gripper_state_transform,
                                                              depth=("depth_1", "depth_2", None)),
    "imperialcollege_sawyer_wrist_cam": _config("image", None, "wrist_image", (None,) * 7 + ("state",),
                                                t.drop_last_action_dim_transform, "NONE"),
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": _config("image", None, "wrist_image",
                                                                     ("joint_state", "gripper_state"),
                                                                     t.iamlab_pick_insert_transform, "JOINT"),
    "uiuc_d3field": _config("image_1", "image_2", None, _NO_STATE, t.uiuc_d3field_transform, "NONE",
                            depth=("depth_1", "depth_2", None)),
    "utaustin_mutex": _config("image", None, "wrist_image", ("state",), t.austin_buds_transform, "JOINT"),
    "berkeley_fanuc_manipulation": _config("image", None, "wrist_image", ("joint_state", None, "gripper_state"),
                                           t.berkeley_fanuc_transform, "JOINT"),
    "cmu_playing_with_food": _config("image", None, "finger_vision_1", ("state", None, None),
                                     t.cmu_playing_with_food_transform),
    "cmu_play_fusion": _config("image", None, None, ("state",), t.cmu_play_fusion_transform, "JOINT"),
    "cmu_stretch": _config("image", None, None, _EEF_PAD_GRIP, t.cmu_stretch_transform),
    "berkeley_gnm_recon": _GNM,
    "berkeley_gnm_cory_hall": _GNM,
    "berkeley_gnm_sac_son": _GNM,
    "droid": _config("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left", ("proprio",),
                     t.droid_transform, "POS_QUAT", frame_filter=t.zero_action_filter, extra={"control_hz": 15}),
    "fmb_dataset": _config("image_side_1", "image_side_2", "image_wrist_1", ("proprio",), t.fmb_transform,
                           depth=("image_side_1_depth", "image_side_2_depth", "image_wrist_1_depth")),
    "dobbe": _config("wrist_image", None, None, ("proprio",), t.dobbe_transform),
    "roboset": _config("image_left", "image_right", "image_wrist", ("proprio",), t.roboset_transform, "JOINT",
                       "JOINT_POS"),
    "rh20t": _config("image_front", "image_side_right", "image_wrist", ("proprio",), t.rh20t_transform),
    # --- T-DROID (OpenVLA's fine-tuning examples, 5 Hz) ---
    "tdroid_carrot_in_bowl": _TDROID,
    "tdroid_pour_corn_in_pot": _TDROID,
    "tdroid_flip_pot_upright": _TDROID,
    "tdroid_move_object_onto_plate": _TDROID,
    "tdroid_knock_object_over": _TDROID,
    "tdroid_cover_object_with_towel": _TDROID,
    # --- DROID-format fine-tuning ---
    "droid_wipe": _config("exterior_image_2_left", None, "wrist_image_left", ("proprio",),
                          t.droid_finetuning_transform),
    # --- LIBERO (OpenVLA's no-noops conversions; OFT adds the four suites in one) ---
    "libero_spatial_no_noops": _LIBERO,
    "libero_object_no_noops": _LIBERO,
    "libero_goal_no_noops": _LIBERO,
    "libero_10_no_noops": _LIBERO,
    "libero_4_task_suites_no_noops": _LIBERO,
    "libero_embedded": _LIBERO,  # made by our `demos` + `convert` stages (same layout as OpenVLA's conversions)
    # --- ALOHA (OpenVLA-OFT's fine-tuning sets; 14-D bimanual joints) ---
    "aloha1_fold_shorts_20_demos": _ALOHA,
    "aloha1_fold_shirt_30_demos": _ALOHA,
    "aloha1_scoop_X_into_bowl_45_demos": _ALOHA,
    "aloha1_put_X_into_pot_300_demos": _ALOHA,
}
# fmt: on
