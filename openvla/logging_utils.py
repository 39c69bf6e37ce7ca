"""Logging set-up for entry points (stages, bench scripts). Never called at import time."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once: ``time level name: message`` on stderr. ``OPENVLA_LOG_LEVEL`` overrides."""
    level = level or os.environ.get("OPENVLA_LOG_LEVEL", "INFO")
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("absl", "urllib3", "alembic", "matplotlib", "PIL", "h5py", "git", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
