"""Your robot's dataset in the registry: camera roles, state keys and the action convention (README step 3).

Every stage runs this file once (``data.registry_file``) before it resolves a dataset or mixture name.
"""

from openvla.data import DatasetConfig, register_dataset
from openvla.data.standardize import identity_transform

register_dataset(
    "my_robot",
    DatasetConfig(
        image_obs_keys={"primary": "image", "wrist": "wrist_image"},  # camera role → RLDS observation key
        state_obs_keys=("state",),  # concatenated into the proprio vector (7 values here)
        standardize=identity_transform,  # the episodes already hold 6 EEF deltas + gripper (1 = open)
        action_encoding="EEF_POS",  # 6 normalized dims + an unnormalized gripper
    ),
    overwrite=True,
)
