"""The one inference path: observation transform + ``Policy`` (DESIGN §14).

``Policy.from_pretrained(model_dir)`` loads an exported or official-format model; ``policy.act(observation)`` turns
a raw camera frame (+ instruction, + robot state) into an action exactly as training would have seen the frame.
eval-libero, eval-bridge and the ``/act`` server all use it. Names are imported lazily: ``import openvla.policy``
pulls in neither torch nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Policy": "openvla.policy.policy",
    "Prediction": "openvla.policy.policy",
    "load_model_and_processor": "openvla.policy.policy",
    "ModelTransform": "openvla.policy.transform",
    "CameraSteps": "openvla.policy.transform",
    "SessionStore": "openvla.policy.sessions",
    "make_executor": "openvla.policy.chunking",
    "ensemble_weights": "openvla.policy.chunking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'openvla.policy' has no attribute {name!r}")
