"""Hugging Face format: registration with transformers' Auto classes, the processor, and the export (DESIGN §10).

Light on purpose (``import openvla`` imports ``openvla.hf.hook``): the heavy names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "register": "openvla.hf.registration",
    "PrismaticProcessor": "openvla.hf.processing",
    "export_hf": "openvla.hf.export",
    "attach_action_tokenizer": "openvla.hf.loading",
    "check_official_layout": "openvla.hf.official",
    "official_config_dict": "openvla.hf.official",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'openvla.hf' has no attribute {name!r}")
