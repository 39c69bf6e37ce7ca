"""A cached side virtual environment with OpenVLA's pinned Hugging Face stack (for compatibility tests).

OpenVLA's users run transformers 4.40.1 + tokenizers 0.19.1 (+ sentencepiece for the slow ``LlamaTokenizer``).
``openvla_stack_python()`` builds that environment once under ``~/.cache/openvla-pipeline/`` (or
``$OPENVLA_SIDE_VENV_DIR``), keyed by a hash of the pins, and returns its interpreter; a later run reuses it.
When the package registry cannot be reached the calling test is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# No torch: tokenization and config parsing need none of it.
OPENVLA_STACK_PINS = (
    "transformers==4.40.1",
    "tokenizers==0.19.1",
    "sentencepiece==0.2.0",
    "protobuf==4.25.3",
    "numpy<2",
)


def side_venv_dir(pins: tuple[str, ...] = OPENVLA_STACK_PINS) -> Path:
    root = Path(os.environ.get("OPENVLA_SIDE_VENV_DIR", Path.home() / ".cache" / "openvla-pipeline"))
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    return root / f"hf-stack-{digest}"


def build_side_venv(pins: tuple[str, ...] = OPENVLA_STACK_PINS, timeout: float = 900) -> Path:
    """The side environment's python, built when missing; raises ``RuntimeError`` with pip's output on failure."""
    venv = side_venv_dir(pins)
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.is_file() and python.is_file():
        return python
    if venv.exists():
        shutil.rmtree(venv)  # a half-built environment from an interrupted run
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise RuntimeError(f"pip install {' '.join(pins)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    marker.write_text("\n".join(pins) + "\n")
    return python


_NETWORK_ERRORS = (
    "Could not find a version",
    "No matching distribution",
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Max retries exceeded",
    "ConnectionError",
    "timed out",
)


def openvla_stack_python() -> Path:
    """The cached side environment's python, or ``pytest.skip`` when the registry is unreachable."""
    try:
        return build_side_venv()
    except subprocess.TimeoutExpired:
        pytest.skip("building the transformers 4.40.1 side environment timed out (package registry too slow?)")
    except RuntimeError as err:
        if any(marker in str(err) for marker in _NETWORK_ERRORS):
            pytest.skip(f"package registry unreachable, cannot build the transformers 4.40.1 side environment: {err}")
        raise


if __name__ == "__main__":  # build it ahead of a test run: python tests/side_venv.py
    print(build_side_venv())
