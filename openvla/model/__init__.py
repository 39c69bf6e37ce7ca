"""openvla.model: the VLA (vision backbones, projector, LLM), its config, named configs, image processor, batching.

Names are imported lazily (PEP 562) so that ``import openvla.model.configuration`` does not pull in timm/torch
models, and so that transformers' Auto-class registration can import single modules without import cycles.
"""

from __future__ import annotations

import importlib
from typing import Any

# Import transformers before any submodule: `import openvla` registers our classes with transformers right after
# transformers' first import (openvla/hf/hook.py), and that registration imports openvla.model.configuration and
# openvla.model.vla. Were transformers first imported from inside one of those modules, they would be only half
# initialized at that moment and the registration would fail.
import transformers  # noqa: F401

_EXPORTS = {
    "OpenVLAConfig": "openvla.model.configuration",
    "OpenVLAForActionPrediction": "openvla.model.vla",
    "OpenVLAOutput": "openvla.model.outputs",
    "UnnormKeyError": "openvla.model.norm_stats",
    "IGNORE_INDEX": "openvla.model.outputs",
    "build_vla": "openvla.model.vla",
    "get_model_config": "openvla.model.configs",
    "set_action_options": "openvla.model.configs",
    "action_options_mismatch": "openvla.model.configs",
    "image_size_of": "openvla.model.configs",
    "model_config_names": "openvla.model.configs",
    "PrismaticImageProcessor": "openvla.model.image_processing",
    "VLABatchTransform": "openvla.model.batching",
    "PaddedCollator": "openvla.model.batching",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'openvla.model' has no attribute {name!r}")
