"""Training checkpoints that are either complete or invisible.

Layout of a run directory::

    runs/<stage>/
      checkpoints/step-000100/   model weights (HF save_pretrained dir, or whatever ``write_model`` writes)
                                 + trainer_state.pt (optimizer, scheduler, per-rank RNG, step, data state)
      latest                     one line: "checkpoints/step-000100" (written AFTER that directory is complete)

A checkpoint directory appears under its final name only once fully written (``openvla.io.atomic_directory``),
and ``latest`` is replaced atomically after that, so a process killed at any moment leaves ``latest`` naming a
complete checkpoint (or no ``latest`` at all). ``keep_last`` older checkpoints are kept; the one ``latest`` names
is never deleted. Leftover temporaries of killed saves are removed when the next run starts.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openvla.io import atomic_directory, atomic_write_text

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.pt"
CHECKPOINT_META = "checkpoint.json"  # step, config fingerprint, data state: readable without loading the optimizer
POINTER = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint named by ``latest`` (or given as a path) is missing or incomplete."""


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (follows its ``latest`` pointer) or a checkpoint directory → the checkpoint directory."""
    path = Path(path)
    pointer = path / POINTER
    if pointer.is_file():
        target = path / pointer.read_text().strip()
        if not (target / TRAINER_STATE).is_file():
            raise CheckpointError(f"{pointer} names {target}, which is not a complete checkpoint")
        return target
    if path.is_file() and path.name == POINTER:
        return resolve_checkpoint(path.parent)
    if path.is_dir():
        return path
    raise CheckpointError(f"{path}: no checkpoint there (expected a run directory with a `latest` file, or a "
                          "checkpoint directory)")  # fmt: skip


class CheckpointManager:
    """Writes, finds and rotates the checkpoints of one run directory (only rank 0 should call ``save``)."""

    def __init__(self, run_dir: str | Path, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be ≥ 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.root = self.run_dir / "checkpoints"
        self.pointer = self.run_dir / POINTER

    def path_for(self, step: int) -> Path:
        return self.root / step_dir_name(step)

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, or None when there is none yet."""
        if not self.pointer.is_file():
            return None
        return resolve_checkpoint(self.run_dir)

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete checkpoint directory, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / TRAINER_STATE).is_file():
                found.append((int(match.group(1)), child))
        return sorted(found)

    def remove_stale_temporaries(self) -> None:
        """Delete half-written directories of saves that were killed (hidden ``.step-*`` siblings)."""
        if self.root.is_dir():
            for child in self.root.iterdir():
                if child.name.startswith(".step-") and child.is_dir():
                    log.info("removing incomplete checkpoint temporary %s", child)
                    shutil.rmtree(child, ignore_errors=True)

    def clear(self) -> None:
        """Forget every checkpoint of this run (when starting over with a different configuration)."""
        self.pointer.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write checkpoint ``step`` with ``write(directory)``; then point ``latest`` at it; then rotate."""
        path = self.path_for(step)
        with atomic_directory(path) as tmp:
            write(tmp)
            if not (tmp / TRAINER_STATE).is_file():
                raise CheckpointError(f"checkpoint writer did not write {TRAINER_STATE} in {path}")
        atomic_write_text(self.pointer, f"{path.relative_to(self.run_dir).as_posix()}\n")
        self._rotate(keep=path)
        log.info("checkpoint step %d → %s", step, path)
        return path

    def _rotate(self, keep: Path) -> None:
        checkpoints = self.complete_checkpoints()
        for _, path in checkpoints[: max(0, len(checkpoints) - self.keep_last)]:
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------------
# RNG state (stored per rank; loadable with torch.load(weights_only=True))
# ------------------------------------------------------------------------------------------------------------
def seed_rng(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators.

    Training draws its randomness from torch (and tf.data from its own seeds), but every checkpoint stores all three
    states (``capture_rng``): left unseeded, Python's and NumPy's differ between two runs of the same training, and
    so does every checkpoint's ``trainer_state.pt``, with the run directory's hash.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def load_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {checkpoint} is not a complete training checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_meta(checkpoint: str | Path) -> dict[str, Any]:
    """``checkpoint.json`` of a checkpoint (step, fingerprint, data state, tracking run id); {} when absent."""
    meta = Path(checkpoint) / CHECKPOINT_META
    return json.loads(meta.read_text()) if meta.is_file() else {}


def checkpoint_fingerprint(checkpoint: str | Path) -> str | None:
    """The configuration fingerprint a checkpoint was trained with (cheap: ``checkpoint.json`` when present)."""
    meta = Path(checkpoint) / CHECKPOINT_META
    if meta.is_file():
        return json.loads(meta.read_text()).get("fingerprint")
    return load_trainer_state(checkpoint).get("fingerprint")


def load_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``save_pretrained``-style directory (``model.safetensors`` or its sharded index)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    single = directory / "model.safetensors"
    if single.is_file():
        return load_file(single)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(directory / shard))
        return state
    raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")
