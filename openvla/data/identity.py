"""What identifies an RLDS dataset's content and the training code, so that a finished training run is resumed only
on the same data and by the same code.

``runs/pretrain`` and ``runs/finetune`` persist across ``dvc repro``. A run's resume fingerprint held the recipe, the
model and the dataset statistics; a data change that kept the statistics (other images, the same actions) would have
resumed a "complete" run trained on the old data. The identity here hashes the TFDS files' bytes: all of them when the
dataset is small (the embedded default's 70 MB take well under a second), and for a large one (a full-scale mixture,
up to terabytes) their names, sizes and the first and last MiB of each file, which any rewrite of a shard changes.

The training code is identified the same way: DVC reruns ``pretrain`` when ``openvla/data``, ``openvla/model`` or
``openvla/train`` changed, and without the code in the fingerprint the rerun found its old run "complete" and wrote
the old model again (an edited augmentation, say, was never trained with).
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


TRAINING_CODE = ("data", "model", "train")  # packages of openvla/ the training stages list as DVC dependencies


def code_identity(root: str | Path | None = None, packages: tuple[str, ...] = TRAINING_CODE) -> dict[str, str]:
    """``{relative path: sha256}`` of the Python sources of ``packages`` under ``root`` (default: the installed
    ``openvla`` package), so that a run is resumed only by the code that started it."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    files = sorted(p for package in packages for p in (root / package).rglob("*.py") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def mixture_identity(data_dir: str | Path, names: list[str]) -> dict[str, dict[str, str]]:
    """The content identity of each dataset of a mixture (``directory_identity`` of its TFDS directory)."""
    return {name: directory_identity(find_builder_dir(data_dir, name)) for name in names}
