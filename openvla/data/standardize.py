"""Per-dataset standardization transforms (TF ops on one whole trajectory).

Each maps a raw RLDS trajectory — every step key with a leading time axis T, ``observation`` a dict — to the
standard layout: ``action`` 7-D EEF_POS (6 deltas + gripper in [0, 1], 1 = open) and ``observation`` with the
state keys its ``DatasetConfig`` names (``EEF_state``, ``gripper_state``, ...). The formulas are OpenVLA's
(DESIGN §6); the code is ours. The statistics cache hashes the source of these functions, so editing one
recomputes the statistics of the datasets that use it.
"""

from __future__ import annotations

from typing import Any

from openvla.tf_import import import_tensorflow

Trajectory = dict[str, Any]


def _slice_time(traj: Trajectory, start: int | None = None, stop: int | None = None) -> Trajectory:
    """Every tensor of the trajectory (all have a leading time axis) sliced to ``[start:stop]``."""
    tf = import_tensorflow()
    return tf.nest.map_structure(lambda x: x[start:stop], traj)


def binarize_gripper_actions(gripper):
    """Continuous gripper (T,) → {0, 1}: > 0.95 open (1), < 0.05 closed (0); in-between steps take the next
    settled value; a trailing run of in-between values keeps the last raw value (nothing settles after it)."""
    tf = import_tensorflow()
    gripper = tf.cast(gripper, tf.float32)
    is_open = gripper > 0.95
    settled = tf.logical_or(is_open, gripper < 0.05)
    settled_value = tf.cast(is_open, tf.float32)

    def step(next_value, inputs):
        value, is_settled = inputs
        return tf.where(is_settled, value, next_value)

    return tf.scan(step, (settled_value, settled), initializer=gripper[-1], reverse=True)


def invert_gripper_actions(gripper):
    """[0 = open, 1 = closed] → [1 = open, 0 = closed]."""
    return 1.0 - gripper


def relative_to_absolute_gripper(gripper):
    """RT-1 relative gripper actions (+1 close, −1 open, ~0 keep) → absolute {0 closed, 1 open}.

    Steps with no command keep the previous state; before the first command the gripper is assumed to be in the
    state opposite to that first command (open when there is no command at all).
    """
    tf = import_tensorflow()
    gripper = tf.cast(gripper, tf.float32)
    command = tf.where(gripper < -0.1, 1, tf.where(gripper > 0.1, -1, 0))  # +1 = open, −1 = close, 0 = keep
    first = command[tf.argmax(tf.cast(command != 0, tf.int32))]
    start = tf.where(first == 0, 1, -first)

    def step(state, cmd):
        return tf.where(cmd == 0, state, cmd)

    states = tf.scan(step, command, initializer=start)
    return tf.cast(states, tf.float32) / 2.0 + 0.5


def relabel_actions_from_state(traj: Trajectory) -> Trajectory:
    """Bridge: replace the 6 movement dims by the reached EEF state delta state[t+1] − state[t]; drops the last
    step (it has no next state)."""
    tf = import_tensorflow()
    state = traj["observation"]["state"]
    movement = state[1:, :6] - state[:-1, :6]
    gripper = traj["action"][:-1, -1:]
    out = _slice_time(traj, stop=-1)
    out["action"] = tf.concat([movement, gripper], axis=1)
    return out


def bridge_orig_transform(traj: Trajectory) -> Trajectory:
    """BridgeData V2 (``bridge_orig`` / the ``bridge_dataset`` builder): drop step 0, binarize the gripper,
    relabel movement from state deltas; state = EEF 6 (xyz, rpy) + gripper 1."""
    tf = import_tensorflow()
    traj = _slice_time(traj, start=1)
    action = tf.cast(traj["action"], tf.float32)
    traj["action"] = tf.concat([action[:, :6], binarize_gripper_actions(action[:, -1])[:, None]], axis=1)
    traj = relabel_actions_from_state(traj)
    state = tf.cast(traj["observation"]["state"], tf.float32)
    traj["observation"]["EEF_state"] = state[:, :6]
    traj["observation"]["gripper_state"] = state[:, -1:]
    return traj


def rt1_transform(traj: Trajectory) -> Trajectory:
    """Fractal (RT-1): world_vector + rotation_delta + absolute gripper; instruction from the observation."""
    tf = import_tensorflow()
    action = traj["action"]
    gripper = relative_to_absolute_gripper(action["gripper_closedness_action"][:, 0])
    traj["action"] = tf.concat(
        [tf.cast(action["world_vector"], tf.float32), tf.cast(action["rotation_delta"], tf.float32), gripper[:, None]],
        axis=1,
    )
    traj["language_instruction"] = traj["observation"]["natural_language_instruction"]
    return traj


def libero_transform(traj: Trajectory) -> Trajectory:
    """LIBERO (OpenVLA's ``*_no_noops`` conversions and ours): gripper −1 open / +1 close → clip to [0, 1], then
    1 − x so 1 = open; state = EEF 6 (xyz, axis-angle) + 2 finger positions."""
    tf = import_tensorflow()
    action = tf.cast(traj["action"], tf.float32)
    gripper = invert_gripper_actions(tf.clip_by_value(action[:, -1:], 0.0, 1.0))
    traj["action"] = tf.concat([action[:, :6], gripper], axis=1)
    state = tf.cast(traj["observation"]["state"], tf.float32)
    traj["observation"]["EEF_state"] = state[:, :6]
    traj["observation"]["gripper_state"] = state[:, -2:]
    return traj


def identity_transform(traj: Trajectory) -> Trajectory:
    """Data already in the standard layout (e.g. ``npz`` conversions whose actions are EEF_POS, gripper 1 = open);
    ``observation/state`` is the proprio."""
    tf = import_tensorflow()
    traj["action"] = tf.cast(traj["action"], tf.float32)
    return traj
