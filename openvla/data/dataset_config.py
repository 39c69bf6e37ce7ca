"""What a registered dataset is: ``DatasetConfig`` and the action encodings (DESIGN §6).

A leaf module (no TensorFlow, no registry): ``oxe_configs.py`` (the shipped data table) and ``registry.py`` (the
lookup logic) both import it, so neither imports the other's internals and there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Action encodings → the action normalization mask: deltas are normalized, grippers are not.
ACTION_MASKS: dict[str, tuple[bool, ...]] = {
    "EEF_POS": (True,) * 6 + (False,),  # xyz + rpy deltas, gripper in [0, 1] (1 = open)
    "JOINT_POS": (True,) * 7 + (False,),  # 7 joint deltas + gripper
    "JOINT_POS_BIMANUAL": ((True,) * 6 + (False,)) * 2,  # 2 × (6 joints + gripper), ALOHA
    "EEF_R6": (True,) * 9 + (False,),  # xyz + 6-D rotation + gripper
}

# Proprio layouts (documentation of what the state keys concatenate to).
STATE_ENCODINGS = ("NONE", "POS_EULER", "POS_QUAT", "POS_AXISANGLE", "JOINT", "JOINT_BIMANUAL")

# Camera roles: OpenVLA's three, plus ALOHA's two wrists (OpenVLA-OFT).
CAMERA_ROLES = ("primary", "secondary", "wrist", "left_wrist", "right_wrist")

TrajectoryTransform = Callable[[dict[str, Any]], dict[str, Any]]
FrameFilter = Callable[[dict[str, Any], Mapping[str, Any]], Any]  # (frame, action statistics) → tf.bool


@dataclass(frozen=True)
class DatasetConfig:
    """How to read one RLDS dataset into the standard trajectory layout.

    ``standardize`` maps a raw trajectory (every RLDS step key, each with a leading time axis T, plus
    ``traj_metadata``) to one whose ``action`` is the model's action (7-D EEF_POS for most datasets, gripper in
    [0, 1] with 1 = open) and whose ``observation`` holds the keys named below.
    """

    image_obs_keys: Mapping[str, str | None]  # camera role (primary / secondary / wrist) → RLDS observation key
    state_obs_keys: Sequence[str | None]  # concatenated into proprio (after standardize); None = one zero dim
    standardize: TrajectoryTransform  # raw trajectory → standard trajectory (TF ops)
    action_encoding: str = "EEF_POS"  # see ACTION_MASKS; decides which action dims get normalized
    state_encoding: str = "POS_EULER"  # documentation of the proprio layout (STATE_ENCODINGS)
    builder_names: Sequence[str] = ()  # TFDS directory names to look for under data_dir; empty = the dataset name
    language_key: str = "language_instruction"  # step key holding the instruction
    action_mask: Sequence[bool] | None = None  # overrides the mask derived from action_encoding
    depth_obs_keys: Mapping[str, str | None] = field(default_factory=dict)  # camera role → depth observation key
    # Applied to frames after normalization and chunking (DROID's zero-action filter): keep the frame when True.
    frame_filter: FrameFilter | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form notes (e.g. control frequency)

    def __post_init__(self) -> None:
        for what, keys in (("image_obs_keys", self.image_obs_keys), ("depth_obs_keys", self.depth_obs_keys)):
            unknown = set(keys) - set(CAMERA_ROLES)
            if unknown:
                raise ValueError(f"{what}: unknown camera role(s) {sorted(unknown)}; use {'/'.join(CAMERA_ROLES)}")
        if self.action_mask is None and self.action_encoding not in ACTION_MASKS:
            raise ValueError(
                f"action_encoding {self.action_encoding!r} unknown (known: {sorted(ACTION_MASKS)}); "
                "or pass action_mask explicitly"
            )
        if self.state_encoding not in STATE_ENCODINGS:
            raise ValueError(f"state_encoding {self.state_encoding!r} unknown (known: {', '.join(STATE_ENCODINGS)})")

    @property
    def normalization_mask(self) -> list[bool]:
        """Action dims normalized by BOUNDS_Q99 (False for the gripper)."""
        return list(self.action_mask if self.action_mask is not None else ACTION_MASKS[self.action_encoding])

    @property
    def action_dim(self) -> int:
        return len(self.normalization_mask)
