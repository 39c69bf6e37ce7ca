"""Synthetic raw trajectories in each Open X-Embodiment dataset's own feature layout, for the registry tests.

``SPECS[name]`` describes one dataset's raw RLDS step (what its standardization transform reads): observation
keys and sizes, the action (a flat vector or a dict of vectors), where the gripper is and in which convention, where
the instruction is, and what the transform is expected to do to the length and the proprio size. ``synthetic_raw``
turns a spec into a T-step trajectory whose gripper follows one known open/closed pattern, so a test can check that
the standardized gripper equals that pattern (1 = open) whatever the raw convention was.

Feature entries: an int n → float32 [T, n] (0 → [T]); "img" → encoded-image strings [T]; "depth" → float32
[T, 4, 4, 1]; "text" → strings [T]; "codes" → int32 [T, 16] unicode code points zero-padded; "zlib7" / "zlib1" →
ZLIB-compressed float32 bytes of 7 / 1 values per step (kuka); "bool" → bool [T].
Gripper conventions: "rel" (+1 close, −1 open, 0 no-op), "closed01" (1 = closed), "pm1_close" (−1 open,
+1 close), "pm1_open" (−1 close, +1 open), "open_bool" (True = open), "raw" (already 1 = open), "continuous"
(finger position 1 open / 0 closed with in-between values), ("const", v) (no gripper: constant v).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

T = 10
IS_OPEN = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1, 1], dtype=np.float32)  # the gripper pattern every trajectory follows

_RTX_ACTION = {"world_vector": 3, "rotation_delta": 3}


def _spec(obs, action, grip, lang="step", top=None, drop=(0, 0), proprio=8, grip_dims=None):
    return {
        "obs": obs,
        "action": action,
        "grip": grip,
        "lang": lang,
        "top": top or {},
        "drop": drop,
        "proprio": proprio,
        "grip_dims": grip_dims,
    }


def _flat(n, index=-1, convention="raw"):
    return n, ("action", index, convention)


def _eef(obs, n=7, index=-1, convention="raw", **kw):
    action, grip = _flat(n, index, convention)
    return _spec(obs, action, grip, **kw)


_GNM = _spec({"image": "img", "position": 2, "yaw": 1, "state": 3}, 2, ("const", 0.0))
_TDROID = _eef({"static_image": "img", "static_depth_image": "depth", "cartesian_position": 6,
                "gripper_position": 1}, 7, convention="continuous")  # fmt: skip
_LIBERO = _eef({"image": "img", "wrist_image": "img", "state": 8}, 7, convention="pm1_close")
_ALOHA = _spec({"image": "img", "left_wrist_image": "img", "right_wrist_image": "img", "state": 14}, 14,
               ("action", (6, 13), "raw"), proprio=14, grip_dims=(6, 13))  # fmt: skip
_DROID_OBS = {"exterior_image_1_left": "img", "exterior_image_2_left": "img", "wrist_image_left": "img",
              "cartesian_position": 6, "gripper_position": 1}  # fmt: skip
_DROID = _spec(_DROID_OBS, 7, ("action_dict", "gripper_position", "closed01"),
               top={"action_dict": {"cartesian_velocity": 6, "gripper_position": 1}}, proprio=7)  # fmt: skip

# fmt: off
SPECS: dict[str, dict[str, Any]] = {
    "fractal20220817_data": _spec({"image": "img", "base_pose_tool_reached": 7, "gripper_closed": 1,
                                   "natural_language_instruction": "text"},
                                  {**_RTX_ACTION, "gripper_closedness_action": 1},
                                  ("action", "gripper_closedness_action", "rel"), lang="obs"),
    "kuka": _spec({"image": "img", "clip_function_input/base_pose_tool_reached": "zlib7", "gripper_closed": "zlib1",
                   "natural_language_instruction": "text"},
                  {**_RTX_ACTION, "gripper_closedness_action": 1}, ("action", "gripper_closedness_action", "rel"),
                  lang="obs"),
    "bridge_oxe": _spec({"image": "img", "image_1": "img", "state": 7, "natural_language_instruction": "text"},
                        {**_RTX_ACTION, "open_gripper": "bool"}, ("action", "open_gripper", "open_bool"), lang="obs",
                        drop=(1, 1)),
    "bridge_orig": _eef({"image_0": "img", "image_1": "img", "state": 7}, convention="continuous", drop=(1, 1),
                        proprio=7),
    "bridge_dataset": _eef({"image_0": "img", "image_1": "img", "state": 7}, convention="continuous", drop=(1, 1)),
    "taco_play": _spec({"rgb_static": "img", "rgb_gripper": "img", "depth_static": "depth", "depth_gripper": "depth",
                        "robot_obs": 15, "natural_language_instruction": "text"},
                       {"rel_actions_world": 7}, ("action", "rel_actions_world", "pm1_open"), lang="obs"),
    "jaco_play": _spec({"image": "img", "image_wrist": "img", "end_effector_cartesian_pos": 7,
                        "natural_language_instruction": "text"},
                       {"world_vector": 3, "gripper_closedness_action": 1},
                       ("action", "gripper_closedness_action", "rel"), lang="obs"),
    "berkeley_cable_routing": _spec({"image": "img", "top_image": "img", "wrist45_image": "img", "robot_state": 7,
                                     "natural_language_instruction": "text"}, dict(_RTX_ACTION), ("const", 0.0),
                                    lang="obs"),
    "roboturk": _spec({"front_rgb": "img", "natural_language_instruction": "text"},
                      {**_RTX_ACTION, "gripper_closedness_action": 1},
                      ("action", "gripper_closedness_action", "closed01"), lang="obs"),
    "nyu_door_opening_surprising_effectiveness": _spec(
        {"image": "img", "natural_language_instruction": "text"}, {**_RTX_ACTION, "gripper_closedness_action": 1},
        ("action", "gripper_closedness_action", "rel"), lang="obs"),
    "viola": _spec({"agentview_rgb": "img", "eye_in_hand_rgb": "img", "joint_states": 7, "gripper_states": 1,
                    "natural_language_instruction": "text"},
                   {**_RTX_ACTION, "gripper_closedness_action": 0},
                   ("action", "gripper_closedness_action", "pm1_close"), lang="obs"),
    "berkeley_autolab_ur5": _spec({"image": "img", "hand_image": "img", "image_with_depth": "depth", "robot_state": 15,
                                   "natural_language_instruction": "text"},
                                  {**_RTX_ACTION, "gripper_closedness_action": 0},
                                  ("action", "gripper_closedness_action", "rel"), lang="obs"),
    "toto": _spec({"image": "img", "state": 7, "natural_language_instruction": "text"},
                  {**_RTX_ACTION, "open_gripper": "bool"}, ("action", "open_gripper", "open_bool"), lang="obs"),
    "language_table": _spec({"rgb": "img", "effector_translation": 2, "instruction": "codes"}, 2, ("const", 1.0),
                            lang="codes"),
    "columbia_cairlab_pusht_real": _spec({"image": "img", "wrist_image": "img", "robot_state": 2,
                                          "natural_language_instruction": "text"},
                                         {**_RTX_ACTION, "gripper_closedness_action": 0},
                                         ("action", "gripper_closedness_action", "raw"), lang="obs"),
    "stanford_kuka_multimodal_dataset_converted_externally_to_rlds": _eef(
        {"image": "img", "depth_image": "depth", "ee_position": 3, "ee_orientation": 4}, 4),
    "nyu_rot_dataset_converted_externally_to_rlds": _eef({"image": "img", "state": 7}, 7),
    "stanford_hydra_dataset_converted_externally_to_rlds": _eef({"image": "img", "wrist_image": "img", "state": 27}, 7,
                                                                convention="closed01"),
    "austin_buds_dataset_converted_externally_to_rlds": _eef({"image": "img", "wrist_image": "img", "state": 24}, 7,
                                                             convention="pm1_close"),
    "nyu_franka_play_dataset_converted_externally_to_rlds": _eef(
        {"image": "img", "image_additional_view": "img", "depth": "depth", "depth_additional_view": "depth",
         "state": 13}, 15, index=-2, convention="pm1_open"),
    "maniskill_dataset_converted_externally_to_rlds": _eef(
        {"image": "img", "wrist_image": "img", "depth": "depth", "wrist_depth": "depth", "tcp_pose": 7, "state": 18},
        7),
    "furniture_bench_dataset_converted_externally_to_rlds": _eef({"image": "img", "wrist_image": "img", "state": 35},
                                                                 8, convention="pm1_close"),
    "cmu_franka_exploration_dataset_converted_externally_to_rlds": _eef({"highres_image": "img"}, 8, index=6),
    "ucsd_kitchen_dataset_converted_externally_to_rlds": _eef({"image": "img", "state": 21}, 8, index=6),
    "ucsd_pick_and_place_dataset_converted_externally_to_rlds": _eef({"image": "img", "state": 7}, 4),
    "austin_sailor_dataset_converted_externally_to_rlds": _eef({"image": "img", "wrist_image": "img", "state": 8}, 7,
                                                               convention="pm1_close"),
    "austin_sirius_dataset_converted_externally_to_rlds": _eef({"image": "img", "wrist_image": "img", "state": 8}, 7,
                                                               convention="pm1_close"),
    "bc_z": _spec({"image": "img", "present/xyz": 3, "present/axis_angle": 3, "present/sensed_close": 1,
                   "natural_language_instruction": "text"},
                  {"future/xyz_residual": 30, "future/axis_angle_residual": 30, "future/target_close": 10},
                  ("action", "future/target_close", "closed01", 0), lang="obs"),
    "utokyo_pr2_opening_fridge_converted_externally_to_rlds": _eef({"image": "img", "state": 7}, 8, index=6),
    "utokyo_pr2_tabletop_manipulation_converted_externally_to_rlds": _eef({"image": "img", "state": 7}, 8, index=6),
    "utokyo_xarm_pick_and_place_converted_externally_to_rlds": _eef(
        {"image": "img", "image2": "img", "hand_image": "img", "end_effector_pose": 6}, 7),
    "utokyo_xarm_bimanual_converted_externally_to_rlds": _eef({"image": "img", "pose_r": 6}, 14),
    "robo_net": _eef({"image": "img", "image1": "img", "state": 5}, 5),
    "berkeley_mvp_converted_externally_to_rlds": _eef({"hand_image": "img", "pose": 7, "gripper": 1}, 8),
    "berkeley_rpt_converted_externally_to_rlds": _eef({"hand_image": "img", "joint_pos": 7, "gripper": 1}, 8),
    "kaist_nonprehensile_converted_externally_to_rlds": _spec({"image": "img", "state": 21}, 20, ("const", 0.0)),
    "stanford_mask_vit_converted_externally_to_rlds": _eef({"image": "img", "end_effector_pose": 5}, 5),
    "tokyo_u_lsmo_converted_externally_to_rlds": _eef({"image": "img", "state": 13}, 7),
    "dlr_sara_pour_converted_externally_to_rlds": _eef({"image": "img", "state": 6}, 7),
    "dlr_sara_grid_clamp_converted_externally_to_rlds": _eef({"image": "img", "state": 12}, 7),
    "dlr_edan_shared_control_converted_externally_to_rlds": _eef({"image": "img", "state": 7}, 7,
                                                                 convention="closed01"),
    "asu_table_top_converted_externally_to_rlds": _eef({"image": "img", "state": 7}, 7,
                                                       top={"ground_truth_states": {"EE": 6}}),
    "stanford_robocook_converted_externally_to_rlds": _eef(
        {"image_1": "img", "image_2": "img", "depth_1": "depth", "depth_2": "depth", "state": 7}, 7),
    "imperialcollege_sawyer_wrist_cam": _eef({"image": "img", "wrist_image": "img", "state": 1}, 8, index=6),
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": _eef({"image": "img", "wrist_image": "img", "state": 20},
                                                                  8, index=7),
    "uiuc_d3field": _spec({"image_1": "img", "image_2": "img", "depth_1": "depth", "depth_2": "depth"}, 3,
                          ("const", 0.0)),
    "utaustin_mutex": _eef({"image": "img", "wrist_image": "img", "state": 24}, 7, convention="pm1_close"),
    "berkeley_fanuc_manipulation": _spec({"image": "img", "wrist_image": "img", "state": 13}, 6,
                                         ("obs", "state", 6, "closed01")),
    "cmu_playing_with_food": _eef({"image": "img", "finger_vision_1": "img", "state": 6}, 8),
    "cmu_play_fusion": _eef({"image": "img", "state": 8}, 9),
    "cmu_stretch": _eef({"image": "img", "state": 4}, 8, index=6),
    "berkeley_gnm_recon": _GNM,
    "berkeley_gnm_cory_hall": _GNM,
    "berkeley_gnm_sac_son": _GNM,
    "droid": _DROID,
    "fmb_dataset": _eef({"image_side_1": "img", "image_side_2": "img", "image_wrist_1": "img",
                         "image_side_1_depth": "depth", "image_side_2_depth": "depth", "image_wrist_1_depth": "depth",
                         "eef_pose": 7, "state_gripper_pose": 0}, 7),
    "dobbe": _eef({"wrist_image": "img", "state": 8}, 7),
    "roboset": _eef({"image_left": "img", "image_right": "img", "image_wrist": "img", "state": 8}, 8,
                    convention="pm1_close"),
    "rh20t": _spec({"image_front": "img", "image_side_right": "img", "image_wrist": "img", "tcp_base": 7,
                    "gripper_width": 0}, {"tcp_base": 6, "gripper": 0}, ("action", "gripper", "raw")),
    **dict.fromkeys(["tdroid_carrot_in_bowl", "tdroid_pour_corn_in_pot", "tdroid_flip_pot_upright",
                     "tdroid_move_object_onto_plate", "tdroid_knock_object_over", "tdroid_cover_object_with_towel"],
                    _TDROID),
    "droid_wipe": _spec({"exterior_image_2_left": "img", "wrist_image_left": "img", "cartesian_position": 6,
                         "gripper_position": 1}, 7, ("action_dict", "gripper_position", "closed01"),
                        top={"action_dict": {"cartesian_velocity": 6, "gripper_position": 1}}, proprio=7),
    **dict.fromkeys(["libero_spatial_no_noops", "libero_object_no_noops", "libero_goal_no_noops", "libero_10_no_noops",
                     "libero_4_task_suites_no_noops", "libero_embedded"], _LIBERO),
    **dict.fromkeys(["aloha1_fold_shorts_20_demos", "aloha1_fold_shirt_30_demos", "aloha1_scoop_X_into_bowl_45_demos",
                     "aloha1_put_X_into_pot_300_demos"], _ALOHA),
}
# fmt: on


def encode_gripper(convention: str, is_open: np.ndarray) -> np.ndarray:
    """The raw gripper signal that means ``is_open`` in ``convention``."""
    if convention == "rel":
        previous = np.concatenate([[is_open[0]], is_open[:-1]])
        return np.where((previous == 1) & (is_open == 0), 1.0, np.where((previous == 0) & (is_open == 1), -1.0, 0.0))
    if convention == "closed01":
        return 1.0 - is_open
    if convention == "pm1_close":
        return np.where(is_open == 1, -1.0, 1.0)
    if convention == "pm1_open":
        return np.where(is_open == 1, 1.0, -1.0)
    if convention == "open_bool":
        return is_open.astype(bool)
    if convention == "raw":
        return is_open.copy()
    if convention == "continuous":  # finger position; in-between values (0.5) take the next settled value
        signal = np.where(is_open == 1, 0.98, 0.02)
        signal[3] = signal[7] = 0.5  # mid-close and mid-open: labelled as the state they end in
        return signal
    raise ValueError(convention)


def _feature(kind: Any, rng: np.random.Generator, n: int = T) -> np.ndarray:
    if kind == "img":
        return np.array([b"\xff\xd8jpeg" for _ in range(n)], dtype=object)
    if kind == "text":
        return np.array([b"pick up the cup"] * n, dtype=object)
    if kind == "codes":
        codes = np.zeros((n, 16), dtype=np.int32)
        codes[:, :6] = [ord(c) for c in "push t"]
        return codes
    if kind == "depth":
        return rng.uniform(0, 2, size=(n, 4, 4, 1)).astype(np.float32)
    if kind == "bool":
        return rng.integers(0, 2, size=n).astype(bool)
    if kind in ("zlib7", "zlib1"):
        width = 7 if kind == "zlib7" else 1
        values = rng.uniform(-1, 1, size=(n, width)).astype(np.float32)
        return np.array([zlib.compress(row.tobytes()) for row in values], dtype=object)
    if kind == 0:
        return rng.uniform(-0.5, 0.5, size=n).astype(np.float32)
    return rng.uniform(-0.5, 0.5, size=(n, kind)).astype(np.float32)


def _put_gripper(array: np.ndarray, index: int, signal: np.ndarray) -> np.ndarray:
    if signal.dtype == bool:
        return signal
    out = array.copy()
    if out.ndim == 1:
        return signal.astype(np.float32)
    out[:, index] = signal
    return out


def synthetic_raw(spec: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """A T-step raw trajectory (numpy) in the spec's layout; the gripper follows ``IS_OPEN``."""
    rng = np.random.default_rng(seed)
    traj: dict[str, Any] = {"observation": {k: _feature(v, rng) for k, v in spec["obs"].items()}}
    action = spec["action"]
    traj["action"] = (
        {k: _feature(v, rng) for k, v in action.items()} if isinstance(action, dict) else _feature(action, rng)
    )
    for key, fields in spec["top"].items():
        traj[key] = {k: _feature(v, rng) for k, v in fields.items()}
    grip = spec["grip"]
    if grip[0] == "action":
        _, where, convention, *index = grip
        signal = encode_gripper(convention, IS_OPEN)
        if isinstance(where, int):
            traj["action"] = _put_gripper(traj["action"], where, signal)
        elif isinstance(where, tuple):  # one gripper per arm
            for column in where:
                traj["action"] = _put_gripper(traj["action"], column, signal)
        else:  # a dict entry: the gripper is its last column unless the spec names one
            traj["action"][where] = _put_gripper(traj["action"][where], index[0] if index else -1, signal)
    elif grip[0] == "action_dict":
        _, key, convention = grip
        traj["action_dict"][key] = _put_gripper(traj["action_dict"][key], 0, encode_gripper(convention, IS_OPEN))
    elif grip[0] == "obs":
        _, key, index, convention = grip
        traj["observation"][key] = _put_gripper(traj["observation"][key], index, encode_gripper(convention, IS_OPEN))
    if spec["lang"] == "step":
        traj["language_instruction"] = np.array([b"pick up the cup"] * T, dtype=object)
    traj["is_first"] = np.arange(T) == 0
    traj["is_last"] = np.arange(T) == T - 1
    traj["reward"] = np.zeros(T, np.float32)
    return traj


def expected_gripper(spec: dict[str, Any]) -> np.ndarray:
    """What the standardized gripper must be (1 = open), after the transform's own step drops."""
    start, end = spec["drop"]
    grip = spec["grip"]
    values = np.full(T, grip[1], np.float32) if grip[0] == "const" else IS_OPEN
    return values[start : T - end]
