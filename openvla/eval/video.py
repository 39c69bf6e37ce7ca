"""MP4 videos of rollouts (imageio + its bundled ffmpeg), written after the episode, off the control loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write uint8 H×W×3 ``frames`` as an H.264 MP4 (sizes rounded up to a multiple of 16 by padding)."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError(f"write_mp4: no frames for {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(np.ascontiguousarray(frame, dtype=np.uint8))
    tmp.replace(path)
    return path
