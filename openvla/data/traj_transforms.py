"""Episode-level transforms on standardized trajectories, applied in DESIGN §6 order by ``loader.py``.

A standardized trajectory (see ``loader.restructure``) is ``{"observation": {"image_<camera>": string [T],
"proprio": float32 [T, P], "timestep": int32 [T]}, "task": {"language_instruction": string [T]},
"action": float32 [T, A], "dataset_name": string [T]}``.
"""

from __future__ import annotations

from openvla.tf_import import import_tensorflow


def has_instruction(traj: dict):
    """Predicate: keep episodes with a non-empty instruction (OpenVLA drops unlabeled ones)."""
    tf = import_tensorflow()
    return tf.reduce_any(tf.strings.length(traj["task"]["language_instruction"]) > 0)


def has_steps(traj: dict):
    """Predicate: keep episodes with at least one step (e.g. after a transform dropped steps)."""
    tf = import_tensorflow()
    return tf.shape(traj["action"])[0] > 0


def within_bounds(traj: dict, max_action: float | None = None, max_proprio: float | None = None):
    """Predicate: optional filters dropping episodes with any |action| > max_action or |proprio| > max_proprio."""
    tf = import_tensorflow()
    keep = tf.constant(True)
    if max_action is not None:
        keep = tf.logical_and(keep, tf.reduce_all(tf.abs(traj["action"]) <= max_action))
    if max_proprio is not None:
        keep = tf.logical_and(keep, tf.reduce_all(tf.abs(traj["observation"]["proprio"]) <= max_proprio))
    return keep


def add_pad_mask_dict(traj: dict) -> dict:
    """``observation/pad_mask_dict``: per image key True where the camera has data (empty string = padding),
    and ``task/pad_mask_dict`` for the instruction."""
    tf = import_tensorflow()
    obs = traj["observation"]
    obs["pad_mask_dict"] = {key: tf.strings.length(value) > 0 for key, value in obs.items() if key.startswith("image_")}
    traj["task"]["pad_mask_dict"] = {
        "language_instruction": tf.strings.length(traj["task"]["language_instruction"]) > 0
    }
    return traj


def uniform_goal_relabel(traj: dict, seed: int | None = None) -> dict:
    """Goal relabeling: each step gets a uniformly chosen future step's images/proprio as ``task/<key>``."""
    tf = import_tensorflow()
    length = tf.shape(traj["action"])[0]
    draw = tf.random.uniform([length], seed=seed)
    start = tf.range(length)
    goal = start + tf.cast(draw * tf.cast(length - start, tf.float32), tf.int32)
    goal = tf.minimum(goal, length - 1)
    for key, value in traj["observation"].items():
        if key.startswith("image_") or key == "proprio":
            traj["task"][key] = tf.gather(value, goal)
    traj["task"]["timestep"] = goal
    return traj


def chunk_window(traj: dict, window_size: int = 1, chunk: int = 1) -> dict:
    """Observation history and action chunks, indices clamped to the episode.

    observation keys → [T, window, ...] (steps t−window+1 … t, clamped at 0; ``observation/pad_mask`` [T, window]
    True where the step is real, False where it was clamped before the episode start).
    action → [T, window, chunk, A]: for history step w, actions w … w+chunk−1 (chunk−1 future actions), clamped at
    the last step; ``action_pad_mask`` [T, window, chunk] True where the index was clamped past the episode end.
    """
    tf = import_tensorflow()
    if window_size < 1 or chunk < 1:
        raise ValueError(f"window_size and chunk must be >= 1, got {window_size} and {chunk}")
    length = tf.shape(traj["action"])[0]
    steps = tf.range(length)[:, None]  # (T, 1)
    history = steps + tf.range(-window_size + 1, 1)[None, :]  # (T, window)
    obs_index = tf.maximum(history, 0)
    action_index = history[:, :, None] + tf.range(chunk)[None, None, :]  # (T, window, chunk)
    past_end = action_index > length - 1
    action_index = tf.clip_by_value(action_index, 0, length - 1)

    observation = {k: v for k, v in traj["observation"].items() if k != "pad_mask_dict"}
    chunked = tf.nest.map_structure(lambda x: tf.gather(x, obs_index), observation)
    if "pad_mask_dict" in traj["observation"]:
        chunked["pad_mask_dict"] = tf.nest.map_structure(
            lambda x: tf.gather(x, obs_index), traj["observation"]["pad_mask_dict"]
        )
    chunked["pad_mask"] = history >= 0
    traj["observation"] = chunked
    traj["action"] = tf.gather(traj["action"], action_index)
    traj["action_pad_mask"] = past_end
    return traj


def repeat_first_steps(traj: dict, steps: int, weight: int) -> dict:
    """Every one of the first ``steps`` steps ``weight`` times, in place (the rest once), so that a pass over the
    data trains on an episode's opening ``weight`` times as often.

    Why: the first actions of a demo decide where the hand goes (the grasp), yet they are a few frames out of ~90,
    and on them the scene is the same for every task of a suite: only the instruction tells them apart. A policy
    that fits later frames can still answer its first query with the mean opening of all tasks.
    """
    tf = import_tensorflow()
    if steps < 0 or weight < 1:
        raise ValueError(f"steps must be ≥ 0 and weight ≥ 1, got {steps} and {weight}")
    length = tf.shape(traj["action"])[0]
    repeats = tf.where(tf.range(length) < steps, weight, 1)
    index = tf.repeat(tf.range(length), repeats)
    return tf.nest.map_structure(lambda x: tf.gather(x, index), traj)


def subsample(traj: dict, length: int, seed: int | None = None) -> dict:
    """Keep ``length`` random steps (in order) of trajectories longer than ``length``."""
    tf = import_tensorflow()
    total = tf.shape(traj["action"])[0]

    def pick():
        index = tf.sort(tf.random.shuffle(tf.range(total), seed=seed)[:length])
        return tf.nest.map_structure(lambda x: tf.gather(x, index), traj)

    return tf.cond(total > length, pick, lambda: traj)
