"""The `/act` policy server (FastAPI + uvicorn) and its client.

``openvla serve --model-dir models/<name>-hf`` serves a Hugging Face export through ``openvla.policy.Policy`` (the
server applies the model's own observation transform to raw frames); ``ActClient`` talks to it and ``RemotePolicy``
acts like a ``Policy`` over HTTP. Names are
imported lazily so that ``import openvla.serve`` does not pull in FastAPI or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ActClient": "openvla.serve.client",
    "ActError": "openvla.serve.client",
    "create_app": "openvla.serve.app",
    "run_server": "openvla.serve.server",
    "BackgroundServer": "openvla.serve.server",
    "MicroBatcher": "openvla.serve.batching",
    "RemotePolicy": "openvla.serve.client",
    "SessionExecutors": "openvla.serve.sessions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'openvla.serve' has no attribute {name!r}")
