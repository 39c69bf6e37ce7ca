"""The shipped mixtures: name → [(dataset, sampling weight)] (a data table; the logic is in ``registry.py``).

OpenVLA's named mixtures with their weights (the RT-X, Magic Soup, T-DROID, DROID and LIBERO ones), OpenVLA-OFT's
additions (all four LIBERO suites in one dataset, ALOHA), and this repository's older names (``rt_1``,
``libero_spatial`` …, ``libero_4_task_suites``). When balancing (``make_dataset(balance_weights=True)``, OpenVLA's
default) each weight is multiplied by the dataset's number of transitions before normalization.
"""

from __future__ import annotations

_RTX = [
    ("fractal20220817_data", 0.54087122203),  # Google RT-1 robot data (large-scale)
    ("kuka", 0.8341046294),
    ("bridge_orig", 1.0),  # BridgeData V2 from the project website (the OXE copy is `bridge_oxe`)
    ("taco_play", 2.0),
    ("jaco_play", 2.0),
    ("berkeley_cable_routing", 3.0),
    ("roboturk", 1.0),
    ("viola", 2.0),
    ("berkeley_autolab_ur5", 1.0),
    ("toto", 1.0),
]

# Magic Soup: OpenVLA's Open X-Embodiment pretraining mixture (Octo's), before its "++" additions.
_MAGIC_SOUP = [
    ("fractal20220817_data", 0.54087122203),
    ("kuka", 0.8341046294),
    ("bridge_orig", 1.0),
    ("taco_play", 2.0),
    ("jaco_play", 1.0),
    ("berkeley_cable_routing", 1.0),
    ("roboturk", 2.0),
    ("viola", 2.0),
    ("berkeley_autolab_ur5", 2.0),
    ("toto", 1.0),
    ("language_table", 0.1),
    ("stanford_hydra_dataset_converted_externally_to_rlds", 2.0),
    ("austin_buds_dataset_converted_externally_to_rlds", 1.0),
    ("nyu_franka_play_dataset_converted_externally_to_rlds", 3.0),
    ("furniture_bench_dataset_converted_externally_to_rlds", 0.1),
    ("ucsd_kitchen_dataset_converted_externally_to_rlds", 2.0),
    ("austin_sailor_dataset_converted_externally_to_rlds", 1.0),
    ("austin_sirius_dataset_converted_externally_to_rlds", 1.0),
    ("dlr_edan_shared_control_converted_externally_to_rlds", 1.0),
    ("iamlab_cmu_pickup_insert_converted_externally_to_rlds", 1.0),
    ("utaustin_mutex", 1.0),
    ("berkeley_fanuc_manipulation", 2.0),
    ("cmu_stretch", 1.0),
]

_PLUS = [("bc_z", 0.2), ("fmb_dataset", 1.0), ("dobbe", 0.2)]  # use bc_z v0.1.0 (later versions are broken)

_LIBERO_SUITES = ["libero_spatial_no_noops", "libero_object_no_noops", "libero_goal_no_noops", "libero_10_no_noops"]
_TDROID = [
    "tdroid_carrot_in_bowl",
    "tdroid_pour_corn_in_pot",
    "tdroid_flip_pot_upright",
    "tdroid_move_object_onto_plate",
    "tdroid_knock_object_over",
    "tdroid_cover_object_with_towel",
]
_ALOHA = [
    "aloha1_fold_shorts_20_demos",
    "aloha1_fold_shirt_30_demos",
    "aloha1_scoop_X_into_bowl_45_demos",
    "aloha1_put_X_into_pot_300_demos",
]

MIXTURES: dict[str, list[tuple[str, float]]] = {
    # --- OpenVLA's named mixtures ---
    "bridge": [("bridge_orig", 1.0)],
    "bridge_rt_1": [("bridge_orig", 1.0), ("fractal20220817_data", 1.0)],
    "rtx": list(_RTX),
    "rtx_franka": [
        *_RTX,
        ("taco_play", 1.0),
        ("berkeley_cable_routing", 1.0),
        ("viola", 1.0),
        ("toto", 1.0),
        ("stanford_hydra_dataset_converted_externally_to_rlds", 1.0),
        ("austin_buds_dataset_converted_externally_to_rlds", 3.0),
        ("nyu_franka_play_dataset_converted_externally_to_rlds", 3.0),
        ("maniskill_dataset_converted_externally_to_rlds", 0.1),
        ("furniture_bench_dataset_converted_externally_to_rlds", 0.1),
        ("cmu_franka_exploration_dataset_converted_externally_to_rlds", 5.0),
        ("austin_sailor_dataset_converted_externally_to_rlds", 1.0),
        ("austin_sirius_dataset_converted_externally_to_rlds", 1.0),
        ("berkeley_rpt_converted_externally_to_rlds", 1.0),
        ("kaist_nonprehensile_converted_externally_to_rlds", 3.0),
        ("stanford_robocook_converted_externally_to_rlds", 1.0),
        ("iamlab_cmu_pickup_insert_converted_externally_to_rlds", 1.0),
        ("utaustin_mutex", 1.0),
        ("cmu_play_fusion", 1.0),
    ],
    "oxe_magic_soup": list(_MAGIC_SOUP),
    "oxe_magic_soup_plus": [*_MAGIC_SOUP, *_PLUS, ("droid", 0.06)],
    # What openvla-7b was pretrained on: Magic Soup++ without language_table and DROID, RT-1 at weight 1.0.
    "oxe_magic_soup_plus_minus": [
        ("fractal20220817_data", 1.0),
        *[(name, weight) for name, weight in _MAGIC_SOUP[1:] if name != "language_table"],
        *_PLUS,
    ],
    **{name: [(name, 1.0)] for name in _TDROID},
    "droid_wipe": [("droid_wipe", 1.0)],
    **{name: [(name, 1.0)] for name in _LIBERO_SUITES},
    "libero_mix": [(name, 1.0) for name in _LIBERO_SUITES],
    # --- OpenVLA-OFT's additions ---
    "libero_4_task_suites_no_noops": [("libero_4_task_suites_no_noops", 1.0)],
    **{name: [(name, 1.0)] for name in _ALOHA},
    # --- this repository's earlier names ---
    "rt_1": [("fractal20220817_data", 1.0)],
    "libero_spatial": [("libero_spatial_no_noops", 1.0)],
    "libero_object": [("libero_object_no_noops", 1.0)],
    "libero_goal": [("libero_goal_no_noops", 1.0)],
    "libero_10": [("libero_10_no_noops", 1.0)],
    "libero_4_task_suites": [(name, 1.0) for name in _LIBERO_SUITES],
}

# Which names come from where (for the README's counts and the registry test).
OPENVLA_MIXTURES = (
    "bridge", "bridge_rt_1", "rtx", "rtx_franka", "oxe_magic_soup", "oxe_magic_soup_plus",
    "oxe_magic_soup_plus_minus", *_TDROID, "droid_wipe", *_LIBERO_SUITES, "libero_mix",
)  # fmt: skip
OFT_EXTRA_MIXTURES = ("libero_4_task_suites_no_noops", *_ALOHA)
