"""The shipped dataset configs and mixtures (a data table; the logic is in ``registry.py``).

Camera keys, state keys and transforms follow OpenVLA's Open X-Embodiment configs for these datasets.
"""

from __future__ import annotations

from openvla.data.registry import DatasetConfig
from openvla.data.standardize import bridge_orig_transform, libero_transform, rt1_transform

_LIBERO = DatasetConfig(
    image_obs_keys={"primary": "image", "secondary": None, "wrist": "wrist_image"},
    state_obs_keys=("EEF_state", "gripper_state"),  # 6 + 2 → proprio 8-D
    standardize=libero_transform,
    action_encoding="EEF_POS",
    state_encoding="POS_AXISANGLE",
    extra={"control_hz": 20},
)

DATASETS: dict[str, DatasetConfig] = {
    # Our copy of BridgeData V2; the Octo debug set in ../shared is named `bridge_dataset`, same layout.
    "bridge_orig": DatasetConfig(
        image_obs_keys={"primary": "image_0", "secondary": "image_1", "wrist": None},
        state_obs_keys=("EEF_state", "gripper_state"),  # 6 + 1 → proprio 7-D
        standardize=bridge_orig_transform,
        builder_names=("bridge_orig", "bridge_dataset"),
        action_encoding="EEF_POS",
        state_encoding="POS_EULER",
        extra={"control_hz": 5},
    ),
    "fractal20220817_data": DatasetConfig(
        image_obs_keys={"primary": "image", "secondary": None, "wrist": None},
        state_obs_keys=("base_pose_tool_reached", "gripper_closed"),  # 7 (xyz + quaternion) + 1
        standardize=rt1_transform,
        action_encoding="EEF_POS",
        state_encoding="POS_QUAT",
        extra={"control_hz": 3},
    ),
    "libero_spatial_no_noops": _LIBERO,
    "libero_object_no_noops": _LIBERO,
    "libero_goal_no_noops": _LIBERO,
    "libero_10_no_noops": _LIBERO,
    "libero_embedded": _LIBERO,  # made by our `demos` + `convert` stages (same layout as OpenVLA's conversions)
}

MIXTURES: dict[str, list[tuple[str, float]]] = {
    "bridge": [("bridge_orig", 1.0)],
    "rt_1": [("fractal20220817_data", 1.0)],
    "libero_spatial": [("libero_spatial_no_noops", 1.0)],
    "libero_object": [("libero_object_no_noops", 1.0)],
    "libero_goal": [("libero_goal_no_noops", 1.0)],
    "libero_10": [("libero_10_no_noops", 1.0)],
    "libero_4_task_suites": [
        ("libero_spatial_no_noops", 1.0),
        ("libero_object_no_noops", 1.0),
        ("libero_goal_no_noops", 1.0),
        ("libero_10_no_noops", 1.0),
    ],
    "bridge_rt_1": [("bridge_orig", 1.0), ("fractal20220817_data", 1.0)],
}
