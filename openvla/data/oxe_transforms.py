"""Standardization transforms of the Open X-Embodiment datasets (TF ops on one whole trajectory).

Each maps a raw RLDS trajectory of one dataset (every step key with a leading time axis T; ``observation`` and,
for some datasets, ``action`` are dicts) to the standard layout of DESIGN §6: ``action`` float32 [T, 7] for EEF_POS
(xyz delta, rpy delta, gripper in [0, 1] with 1 = open), [T, 8] for JOINT_POS, [T, 14] for ALOHA's two arms;
``observation`` holding the state keys that the dataset's ``DatasetConfig`` names; ``language_instruction`` a
string per step. The field layouts, gripper conventions and relabelling rules are facts about the datasets (as
OpenVLA's and OpenVLA-OFT's registries read them); the code is ours. The shared helpers (gripper binarization,
inversion, relative → absolute, Bridge relabelling) and the Bridge / RT-1 / LIBERO transforms are in
``standardize.py``. TensorFlow is imported when a transform first runs, never at import time.

Gripper conventions met below, all mapped to 1 = open, 0 = closed:
* relative commands (RT-1 family: +1 close, −1 open, 0 = no-op that keeps the state) → ``relative_to_absolute_gripper``;
* absolute closedness in [0, 1] (1 = closed) → ``1 − x`` (``invert_gripper_actions``), after clipping when the raw
  range is [−1, 1] (−1 open, +1 close);
* absolute openness (1 = open; booleans ``open_gripper``, taco_play's [−1 close, +1 open] clipped) → kept;
* continuous finger position (Bridge, T-DROID) → ``binarize_gripper_actions``;
* no gripper (language_table, GNM, uiuc_d3field, berkeley_cable_routing, kaist) → a constant.
"""

from __future__ import annotations

from typing import Any

from openvla.data.standardize import (
    _slice_time,
    binarize_gripper_actions,
    invert_gripper_actions,
    relabel_actions_from_state,
    relative_to_absolute_gripper,
)
from openvla.tf_import import import_tensorflow

Trajectory = dict[str, Any]


# -- helpers -----------------------------------------------------------------------------------------------------


def _cat(*parts):
    """Concatenate float32 casts of ``parts`` on the last axis."""
    tf = import_tensorflow()
    return tf.concat([tf.cast(p, tf.float32) for p in parts], axis=-1)


def _zeros(x, n: int):
    """float32 zeros [T, n] for a tensor ``x`` with a leading time axis."""
    tf = import_tensorflow()
    return tf.zeros([tf.shape(x)[0], n], tf.float32)


def _instruction_from_observation(traj: Trajectory, key: str = "natural_language_instruction") -> Trajectory:
    traj["language_instruction"] = traj["observation"][key]
    return traj


def quaternion_to_euler(quaternion):
    """Unit quaternions [..., 4] as (x, y, z, w) → (roll, pitch, yaw) [..., 3] with R = Rz(yaw)·Ry(pitch)·Rx(roll)
    (the convention of tensorflow-graphics' ``euler.from_quaternion``, which OpenVLA uses for these datasets)."""
    tf = import_tensorflow()
    q = tf.cast(quaternion, tf.float32)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    roll = tf.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = tf.asin(tf.clip_by_value(2.0 * (w * y - z * x), -1.0, 1.0))
    yaw = tf.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return tf.stack([roll, pitch, yaw], axis=-1)


def _world_rotation_gripper(traj: Trajectory, gripper) -> Trajectory:
    """RT-X style action dict → world_vector (3) + rotation_delta (3) + ``gripper`` [T, 1]."""
    action = traj["action"]
    traj["action"] = _cat(action["world_vector"], action["rotation_delta"], gripper)
    return traj


def _clip_invert(gripper):
    """[−1 open, +1 close] (or [0 open, 1 close]) → 1 = open, 0 = closed."""
    tf = import_tensorflow()
    return invert_gripper_actions(tf.clip_by_value(tf.cast(gripper, tf.float32), 0.0, 1.0))


# -- RT-X family (action dicts, instruction in the observation) -------------------------------------------------


def kuka_transform(traj: Trajectory) -> Trajectory:
    """Kuka (QT-Opt): relative gripper; state stored ZLIB-compressed as raw float32 bytes (7 pose + 1 gripper)."""
    tf = import_tensorflow()
    gripper = relative_to_absolute_gripper(traj["action"]["gripper_closedness_action"][:, 0])
    traj = _world_rotation_gripper(traj, gripper[:, None])
    obs = traj["observation"]
    for key, width in (("clip_function_input/base_pose_tool_reached", 7), ("gripper_closed", 1)):
        raw = tf.io.decode_raw(tf.io.decode_compressed(obs[key], compression_type="ZLIB"), tf.float32)
        obs[key] = tf.reshape(raw, (-1, width))
    return _instruction_from_observation(traj)


def taco_play_transform(traj: Trajectory) -> Trajectory:
    """TACO-Play: world-frame relative actions, gripper −1 close / +1 open → clip to [0, 1]; state from robot_obs."""
    tf = import_tensorflow()
    obs = traj["observation"]
    obs["state_eef"] = tf.cast(obs["robot_obs"][:, :6], tf.float32)
    obs["state_gripper"] = tf.cast(obs["robot_obs"][:, 7:8], tf.float32)
    action = tf.cast(traj["action"]["rel_actions_world"], tf.float32)
    traj["action"] = _cat(action[:, :6], tf.clip_by_value(action[:, -1:], 0.0, 1.0))
    return _instruction_from_observation(traj)


def jaco_play_transform(traj: Trajectory) -> Trajectory:
    """Jaco-Play: translation only (rotation zero), relative gripper."""
    obs = traj["observation"]
    obs["state_eef"] = obs["end_effector_cartesian_pos"][:, :6]
    obs["state_gripper"] = obs["end_effector_cartesian_pos"][:, -1:]
    gripper = relative_to_absolute_gripper(traj["action"]["gripper_closedness_action"][:, 0])
    world = traj["action"]["world_vector"]
    traj["action"] = _cat(world, _zeros(world, 3), gripper[:, None])
    return _instruction_from_observation(traj)


def berkeley_cable_routing_transform(traj: Trajectory) -> Trajectory:
    """Cable routing: the gripper holds the cable throughout (constant 0)."""
    traj = _world_rotation_gripper(traj, _zeros(traj["action"]["world_vector"], 1))
    return _instruction_from_observation(traj)


def roboturk_transform(traj: Trajectory) -> Trajectory:
    """RoboTurk: absolute closedness [T, 1] (1 = closed) → clip, invert."""
    traj = _world_rotation_gripper(traj, _clip_invert(traj["action"]["gripper_closedness_action"]))
    return _instruction_from_observation(traj)


def relative_gripper_transform(traj: Trajectory) -> Trajectory:
    """RT-1-style datasets (NYU door opening, ...): relative gripper [T, 1] → absolute."""
    gripper = relative_to_absolute_gripper(traj["action"]["gripper_closedness_action"][:, 0])
    traj = _world_rotation_gripper(traj, gripper[:, None])
    return _instruction_from_observation(traj)


def viola_transform(traj: Trajectory) -> Trajectory:
    """VIOLA: absolute closedness [T] in [−1, 1] (+1 = close) → clip, invert."""
    traj = _world_rotation_gripper(traj, _clip_invert(traj["action"]["gripper_closedness_action"][:, None]))
    return _instruction_from_observation(traj)


def berkeley_autolab_ur5_transform(traj: Trajectory) -> Trajectory:
    """Berkeley UR5: state = robot_state[6:14] (pose + gripper), depth from image_with_depth, relative gripper [T]."""
    obs = traj["observation"]
    obs["state"] = obs["robot_state"][:, 6:14]
    obs["depth"] = obs.pop("image_with_depth")
    gripper = relative_to_absolute_gripper(traj["action"]["gripper_closedness_action"])
    traj = _world_rotation_gripper(traj, gripper[:, None])
    return _instruction_from_observation(traj)


def open_gripper_transform(traj: Trajectory) -> Trajectory:
    """TOTO and others with a boolean ``open_gripper`` (already 1 = open)."""
    traj = _world_rotation_gripper(traj, traj["action"]["open_gripper"][:, None])
    return _instruction_from_observation(traj)


def bridge_oxe_transform(traj: Trajectory) -> Trajectory:
    """Bridge V2 as stored in the OXE bucket: drop step 0 (all-zero action), action dict with ``open_gripper``,
    movement relabelled from state deltas; state = EEF 6 + gripper 1."""
    tf = import_tensorflow()
    traj = _slice_time(traj, start=1)
    traj = _world_rotation_gripper(traj, traj["action"]["open_gripper"][:, None])
    traj = _instruction_from_observation(traj)
    traj = relabel_actions_from_state(traj)
    state = tf.cast(traj["observation"]["state"], tf.float32)
    traj["observation"]["EEF_state"] = state[:, :6]
    traj["observation"]["gripper_state"] = state[:, -1:]
    return traj


def language_table_transform(traj: Trajectory) -> Trajectory:
    """Language-Table: 2-D planar action, no rotation, gripper constant open; the instruction is stored as int32
    unicode code points padded with zeros."""
    tf = import_tensorflow()
    action = tf.cast(traj["action"], tf.float32)
    traj["action"] = _cat(action, tf.zeros_like(action), tf.zeros_like(action), tf.ones_like(action[:, :1]))
    text = tf.strings.unicode_encode(tf.cast(traj["observation"]["instruction"], tf.int32), output_encoding="UTF-8")
    traj["language_instruction"] = tf.strings.split(text, "\x00")[:, :1].to_tensor(default_value="")[:, 0]
    return traj


def pusht_transform(traj: Trajectory) -> Trajectory:
    """Columbia PushT (real): gripper_closedness_action kept as is."""
    traj = _world_rotation_gripper(traj, traj["action"]["gripper_closedness_action"][:, None])
    return _instruction_from_observation(traj)


def bc_z_transform(traj: Trajectory) -> Trajectory:
    """BC-Z: future xyz / axis-angle residuals (first step of the predicted future), target_close (1 = closed)."""
    tf = import_tensorflow()
    action = traj["action"]
    close = tf.cast(action["future/target_close"][:, :1], tf.float32)
    traj["action"] = _cat(
        action["future/xyz_residual"][:, :3], action["future/axis_angle_residual"][:, :3], invert_gripper_actions(close)
    )
    return _instruction_from_observation(traj)


# -- "converted externally" datasets (flat action vectors) -------------------------------------------------------


def stanford_kuka_multimodal_transform(traj: Trajectory) -> Trajectory:
    """Stanford Kuka multimodal: translation + gripper; depth has a trailing channel axis."""
    traj["observation"]["depth_image"] = traj["observation"]["depth_image"][..., 0]
    action = traj["action"]
    traj["action"] = _cat(action[:, :3], _zeros(action, 3), action[:, -1:])
    return traj


def nyu_rot_transform(traj: Trajectory) -> Trajectory:
    obs = traj["observation"]
    obs["eef_state"] = obs["state"][..., :6]
    obs["gripper_state"] = obs["state"][..., -1:]
    traj["action"] = _cat(traj["action"][..., :7])
    return traj


def stanford_hydra_transform(traj: Trajectory) -> Trajectory:
    """HYDRA: gripper 1 = closed → invert; EEF = position (0:3) + euler (7:10); gripper state at −3."""
    obs = traj["observation"]
    obs["eef_state"] = _cat(obs["state"][:, :3], obs["state"][:, 7:10])
    obs["gripper_state"] = obs["state"][:, -3:-2]
    traj["action"] = _cat(traj["action"][:, :6], invert_gripper_actions(traj["action"][:, -1:]))
    return traj


def clip_invert_gripper_transform(traj: Trajectory) -> Trajectory:
    """Franka datasets with gripper in [−1 open, +1 close] (Austin SAILOR / Sirius): clip, invert."""
    traj["action"] = _cat(traj["action"][:, :6], _clip_invert(traj["action"][:, -1:]))
    return traj


def austin_buds_transform(traj: Trajectory) -> Trajectory:
    """Austin BUDS (also UT Austin MUTEX): clip + invert the gripper; state = first 8 dims (7 joints + gripper)."""
    traj["observation"]["state"] = traj["observation"]["state"][:, :8]
    return clip_invert_gripper_transform(traj)


def nyu_franka_play_transform(traj: Trajectory) -> Trajectory:
    """NYU Franka play: action = EEF deltas at [−8:−2] + gripper at −2 (clipped; 1 = open); depth channel dropped."""
    tf = import_tensorflow()
    obs = traj["observation"]
    obs["depth"] = tf.cast(obs["depth"][..., 0], tf.float32)
    obs["depth_additional_view"] = tf.cast(obs["depth_additional_view"][..., 0], tf.float32)
    obs["eef_state"] = obs["state"][:, -6:]
    action = tf.cast(traj["action"], tf.float32)
    traj["action"] = _cat(action[:, -8:-2], tf.clip_by_value(action[:, -2:-1], 0.0, 1.0))
    return traj


def maniskill_transform(traj: Trajectory) -> Trajectory:
    traj["observation"]["gripper_state"] = traj["observation"]["state"][..., 7:8]
    return traj


def furniture_bench_transform(traj: Trajectory) -> Trajectory:
    """FurnitureBench: action rotation is a quaternion → euler; gripper in [−1 open, +1 close] → clip, invert;
    state = pose (7) + gripper width (last)."""
    obs = traj["observation"]
    obs["state"] = _cat(obs["state"][:, :7], obs["state"][:, -1:])
    action = traj["action"]
    traj["action"] = _cat(action[:, :3], quaternion_to_euler(action[:, 3:7]), _clip_invert(action[:, -1:]))
    return traj


def drop_last_action_dim_transform(traj: Trajectory) -> Trajectory:
    """Datasets whose last action dim is a terminate flag (CMU exploration, Imperial wrist cam, ...)."""
    traj["action"] = _cat(traj["action"][..., :-1])
    return traj


def ucsd_kitchen_transform(traj: Trajectory) -> Trajectory:
    traj["observation"]["joint_state"] = traj["observation"]["state"][:, :7]
    return drop_last_action_dim_transform(traj)


def eef_gripper_state_transform(traj: Trajectory) -> Trajectory:
    """State = EEF 6 (first dims) + gripper (last dim) as ``eef_state`` / ``gripper_state``."""
    obs = traj["observation"]
    obs["eef_state"] = obs["state"][:, :6]
    obs["gripper_state"] = obs["state"][:, -1:]
    return traj


def ucsd_pick_place_transform(traj: Trajectory) -> Trajectory:
    """UCSD pick and place: translation + gripper (rotation zero)."""
    traj = eef_gripper_state_transform(traj)
    action = traj["action"]
    traj["action"] = _cat(action[:, :3], _zeros(action, 3), action[:, -1:])
    return traj


def tokyo_pr2_transform(traj: Trajectory) -> Trajectory:
    """UTokyo PR2 (fridge, tabletop): EEF + gripper state; last action dim is a terminate flag."""
    return drop_last_action_dim_transform(eef_gripper_state_transform(traj))


def identity_oxe_transform(traj: Trajectory) -> Trajectory:
    """Datasets already in the target layout (xArm pick-place, DLR SARA pour, Berkeley MVP / RPT, ALOHA)."""
    traj["action"] = _cat(traj["action"])
    return traj


def utokyo_xarm_bimanual_transform(traj: Trajectory) -> Trajectory:
    """xArm bimanual: the last 7 action dims (one arm: EEF deltas + gripper)."""
    traj["action"] = _cat(traj["action"][..., -7:])
    return traj


def planar_xyz_yaw_transform(traj: Trajectory, state_key: str = "state") -> Trajectory:
    """RoboNet / Stanford MaskViT: xyz + yaw (4 dims) padded with 2 zero rotations, + gripper (last dim)."""
    obs = traj["observation"]
    state = obs[state_key]
    obs["eef_state"] = _cat(state[:, :4], _zeros(state, 2))
    obs["gripper_state"] = _cat(state[:, -1:])
    action = traj["action"]
    traj["action"] = _cat(action[:, :4], _zeros(action, 2), action[:, -1:])
    return traj


def robo_net_transform(traj: Trajectory) -> Trajectory:
    return planar_xyz_yaw_transform(traj, "state")


def stanford_mask_vit_transform(traj: Trajectory) -> Trajectory:
    return planar_xyz_yaw_transform(traj, "end_effector_pose")


def kaist_nonprehensile_transform(traj: Trajectory) -> Trajectory:
    """KAIST non-prehensile: no gripper (constant 0); state = last 7 dims."""
    traj["observation"]["state"] = traj["observation"]["state"][:, -7:]
    action = traj["action"]
    traj["action"] = _cat(action[:, :6], _zeros(action, 1))
    return traj


def dlr_sara_grid_clamp_transform(traj: Trajectory) -> Trajectory:
    traj["observation"]["state"] = traj["observation"]["state"][:, :6]
    traj["action"] = _cat(traj["action"])
    return traj


def invert_gripper_transform(traj: Trajectory) -> Trajectory:
    """Gripper 1 = closed → invert (DLR EDAN shared control)."""
    traj["action"] = _cat(traj["action"][:, :6], invert_gripper_actions(traj["action"][:, -1:]))
    return traj


def asu_table_top_transform(traj: Trajectory) -> Trajectory:
    """ASU table top: EEF pose from the step-level ``ground_truth_states/EE``; gripper = last state dim."""
    traj["observation"]["eef_state"] = traj["ground_truth_states"]["EE"]
    traj["observation"]["gripper_state"] = traj["observation"]["state"][:, -1:]
    traj["action"] = _cat(traj["action"])
    return traj


def iamlab_pick_insert_transform(traj: Trajectory) -> Trajectory:
    """CMU IAM lab pick-insert: quaternion rotation → euler; gripper (dim 7) already 1 = open; joints + gripper."""
    obs = traj["observation"]
    obs["joint_state"] = obs["state"][:, :7]
    obs["gripper_state"] = obs["state"][:, 7:8]
    action = traj["action"]
    traj["action"] = _cat(action[:, :3], quaternion_to_euler(action[:, 3:7]), action[:, 7:8])
    return traj


def uiuc_d3field_transform(traj: Trajectory) -> Trajectory:
    """UIUC D3Field: 3-D translation only; no rotation, no gripper (0)."""
    action = traj["action"]
    traj["action"] = _cat(action, _zeros(action, 3), _zeros(action, 1))
    return traj


def berkeley_fanuc_transform(traj: Trajectory) -> Trajectory:
    """Berkeley Fanuc: no gripper action stored; use the gripper state (1 = closed), inverted."""
    obs = traj["observation"]
    obs["joint_state"] = obs["state"][:, :6]
    obs["gripper_state"] = obs["state"][:, 6:7]
    traj["action"] = _cat(traj["action"], invert_gripper_actions(_cat(obs["gripper_state"])))
    return traj


def cmu_playing_with_food_transform(traj: Trajectory) -> Trajectory:
    """CMU playing with food: quaternion rotation → euler; gripper (last) kept."""
    action = traj["action"]
    traj["action"] = _cat(action[:, :3], quaternion_to_euler(action[:, 3:7]), action[:, -1:])
    return traj


def cmu_play_fusion_transform(traj: Trajectory) -> Trajectory:
    """CMU PlayFusion: xyz (first 3) + the last 4 dims (rotation 3 + gripper)."""
    action = traj["action"]
    traj["action"] = _cat(action[:, :3], action[:, -4:])
    return traj


def cmu_stretch_transform(traj: Trajectory) -> Trajectory:
    """Hello Stretch: xyz state, no orientation (zeros); last action dim is a terminate flag."""
    obs = traj["observation"]
    obs["eef_state"] = _cat(obs["state"][:, :3], _zeros(obs["state"], 3))
    obs["gripper_state"] = _cat(obs["state"][:, -1:])
    return drop_last_action_dim_transform(traj)


def gnm_transform(traj: Trajectory) -> Trajectory:
    """GNM navigation (RECON, Cory Hall, SACSoN): 2-D waypoint action; state = position (2) + 3 zeros + yaw (1);
    no rotation, gripper 0."""
    obs = traj["observation"]
    obs["state"] = _cat(obs["position"], _zeros(obs["position"], 3), obs["yaw"])
    action = traj["action"]
    traj["action"] = _cat(action, _zeros(action, 2), _zeros(action, 2), _zeros(action, 1))
    return traj


def fmb_transform(traj: Trajectory) -> Trajectory:
    """Functional Manipulation Benchmark: proprio = EEF pose + gripper pose."""
    obs = traj["observation"]
    obs["proprio"] = _cat(obs["eef_pose"], obs["state_gripper_pose"][..., None])
    traj["action"] = _cat(traj["action"])
    return traj


def dobbe_transform(traj: Trajectory) -> Trajectory:
    traj["observation"]["proprio"] = traj["observation"]["state"]
    traj["action"] = _cat(traj["action"])
    return traj


def roboset_transform(traj: Trajectory) -> Trajectory:
    """RoboSet: 7 joint deltas + gripper in [−1 open, +1 close] → clip, invert (JOINT_POS, 8-D)."""
    traj["observation"]["proprio"] = traj["observation"]["state"]
    action = traj["action"]
    traj["action"] = _cat(action[:, :7], _clip_invert(action[:, -1:]))
    return traj


def rh20t_transform(traj: Trajectory) -> Trajectory:
    """RH20T: TCP pose action (6) + gripper; proprio = TCP pose + gripper width."""
    action, obs = traj["action"], traj["observation"]
    traj["action"] = _cat(action["tcp_base"], action["gripper"][:, None])
    obs["proprio"] = _cat(obs["tcp_base"], obs["gripper_width"][..., None])
    return traj


def tdroid_transform(traj: Trajectory) -> Trajectory:
    """T-DROID (and PPGM) conversions: continuous gripper → binarized; EEF_state from cartesian_position, gripper
    state from gripper_position."""
    action = traj["action"]
    traj["action"] = _cat(action[:, :6], binarize_gripper_actions(action[:, -1])[:, None])
    obs = traj["observation"]
    obs["EEF_state"] = _cat(obs["cartesian_position"][:, :6])
    obs["gripper_state"] = _cat(obs["gripper_position"][:, -1:])
    return traj


# -- DROID -------------------------------------------------------------------------------------------------------


def _droid_base_action(traj: Trajectory) -> Trajectory:
    """DROID's action space as OpenVLA trains on it: the commanded Cartesian velocity in the robot's base frame
    (3 translation + 3 rotation) and the gripper position command inverted (DROID stores 1 = closed); proprio =
    cartesian_position (6) + gripper_position (1)."""
    action = traj["action_dict"]
    traj["action"] = _cat(
        action["cartesian_velocity"][:, :3],
        action["cartesian_velocity"][:, 3:6],
        1.0 - _cat(action["gripper_position"]),
    )
    obs = traj["observation"]
    obs["proprio"] = _cat(obs["cartesian_position"], obs["gripper_position"])
    return traj


def droid_transform(traj: Trajectory) -> Trajectory:
    """DROID (pretraining): base-frame action, and the two exterior cameras swapped with probability 1/2 per
    trajectory (so ``primary`` is either exterior view)."""
    tf = import_tensorflow()
    traj = _droid_base_action(traj)
    obs = traj["observation"]
    first, second = obs["exterior_image_1_left"], obs["exterior_image_2_left"]
    swap = tf.random.uniform([]) > 0.5
    obs["exterior_image_1_left"] = tf.where(swap, second, first)
    obs["exterior_image_2_left"] = tf.where(swap, first, second)
    return traj


def droid_finetuning_transform(traj: Trajectory) -> Trajectory:
    """DROID-format fine-tuning sets (``droid_wipe``): base-frame action, cameras as stored."""
    return _droid_base_action(traj)


# DROID's action statistics (q01 / q99 of the 6 movement dims) that OpenVLA's zero-action filter hard-codes: the
# normalized value of a zero action under BOUNDS_Q99 with these bounds is what "no movement" looks like.
DROID_ACTION_Q01 = (-0.7776297926902771, -0.5803514122962952, -0.5795090794563293,
                    -0.6464047729969025, -0.7041108310222626, -0.8895104378461838)  # fmt: skip
DROID_ACTION_Q99 = (0.7597932070493698, 0.5726242214441299, 0.7351000607013702,
                    0.6705610305070877, 0.6464948207139969, 0.8897542208433151)  # fmt: skip


def zero_action_filter(frame: Trajectory, action_stats: Any = None):
    """DROID's frame filter, applied after normalization (and chunking): keep a frame unless every movement dim
    (the first 6) of its action equals the normalized zero action (within 1e−5); the gripper is ignored.

    The normalized zero is 2·(0 − q01)/(q99 − q01 + 1e−8) − 1 with the dataset's own q01/q99 (``action_stats``,
    the dataset's ``"action"`` statistics entry) or, without them, DROID's published bounds.
    """
    tf = import_tensorflow()
    if action_stats is not None:
        q01 = tf.constant(action_stats["q01"][:6], tf.float32)
        q99 = tf.constant(action_stats["q99"][:6], tf.float32)
    else:
        q01, q99 = tf.constant(DROID_ACTION_Q01, tf.float32), tf.constant(DROID_ACTION_Q99, tf.float32)
    zero = 2.0 * (0.0 - q01) / (q99 - q01 + 1e-8) - 1.0
    movement = tf.cast(frame["action"], tf.float32)[..., :6]
    return tf.reduce_any(tf.abs(movement - zero) > 1e-5)


# -- ALOHA (OpenVLA-OFT) -----------------------------------------------------------------------------------------


def aloha_transform(traj: Trajectory) -> Trajectory:
    """ALOHA (OFT's conversions): 14-D absolute joint targets of both arms (6 joints + gripper each) and a 14-D
    joint state, already in the model's layout."""
    traj["action"] = _cat(traj["action"])
    traj["observation"]["state"] = _cat(traj["observation"]["state"])
    return traj
