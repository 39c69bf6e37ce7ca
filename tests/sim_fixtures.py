"""Fixtures for the LIBERO tests: skip when the simulator is not installed, and one shared small environment."""

from __future__ import annotations

import functools
import importlib.util

import pytest

SIM_RESOLUTION = 64  # small frames keep software rendering cheap in tests


def require_libero() -> None:
    """Skip the calling test when LIBERO (extra [sim]) is not importable."""
    if importlib.util.find_spec("libero") is None or importlib.util.find_spec("robosuite") is None:
        pytest.skip("LIBERO is not installed (pip install -e '.[sim]')")


@functools.cache
def shared_spatial_env():
    """libero_spatial task 0 at 64 px with both cameras — the env the demos recorder caches for this resolution, so
    every sim test of the session (and a short demos run) reuses it instead of building another (~15 s each)."""
    require_libero()
    from openvla.sim.demos import AttemptSpec, _env_for
    from openvla.tf_import import import_tensorflow

    import_tensorflow()  # torch's triton and TensorFlow must load before Mesa creates a GL context (segfault otherwise)

    spec = AttemptSpec(
        suite="libero_spatial", task_id=0, attempt=0, seed=0, resolution=SIM_RESOLUTION,
        noise_fraction=0.0, noise_std=0.0, max_steps=220,
    )  # fmt: skip
    env, _ = _env_for(spec)
    return env
