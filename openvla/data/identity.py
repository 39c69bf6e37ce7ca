"""What identifies an RLDS dataset's content, so that a finished training run is resumed only on the same data.

``runs/pretrain`` and ``runs/finetune`` persist across ``dvc repro``. A run's resume fingerprint held the recipe, the
model and the dataset statistics; a data change that kept the statistics (other images, the same actions) would have
resumed a "complete" run trained on the old data. The identity here hashes the TFDS files' bytes: all of them when the
dataset is small (the embedded default's 70 MB take well under a second), and for a large one (a full-scale mixture,
up to terabytes) their names, sizes and the first and last MiB of each file, which any rewrite of a shard changes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from openvla.data.registry import find_builder_dir

log = logging.getLogger(__name__)

FULL_HASH_BYTES = 256 << 20  # datasets up to this size are hashed whole
SAMPLE_BYTES = 1 << 20  # larger ones: this many bytes from each end of every file


def _file_digest(path: Path, size: int, whole: bool) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if whole or size <= 2 * SAMPLE_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(size - SAMPLE_BYTES)
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def directory_identity(directory: str | Path) -> dict[str, str]:
    """``{relative path: "<size>:<sha256>"}`` of every file under ``directory`` (whole-file hashes up to
    ``FULL_HASH_BYTES`` in all, sampled ones beyond)."""
    directory = Path(directory)
    sizes = {p: p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}
    whole = sum(sizes.values()) <= FULL_HASH_BYTES
    if not whole:
        log.info("%s: over %d MiB, identified by file sizes and sampled bytes", directory, FULL_HASH_BYTES >> 20)
    return {str(p.relative_to(directory)): f"{size}:{_file_digest(p, size, whole)}" for p, size in sizes.items()}


def mixture_identity(data_dir: str | Path, names: list[str]) -> dict[str, dict[str, str]]:
    """The content identity of each dataset of a mixture (``directory_identity`` of its TFDS directory)."""
    return {name: directory_identity(find_builder_dir(data_dir, name)) for name in names}
