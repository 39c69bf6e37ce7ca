"""Process-group set-up for training: one code path for 1 process, ``torchrun`` on one node, and many nodes.

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE``/``MASTER_ADDR``; without them the
process starts a private one-process group (a ``HashStore``), so FSDP and DDP run unchanged in a plain
``python`` call, a test, or a notebook. The backend follows the device: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int  # global rank
    world_size: int  # processes in the job
    local_rank: int  # rank on this node (selects the GPU)
    local_world_size: int  # processes on this node
    device: torch.device  # cuda:<local_rank> or cpu
    backend: str  # "nccl" or "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or any launcher that sets the torch.distributed env)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto") -> DistInfo:
    """Join (or create) the default process group and pick this rank's device.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda". Calling it again returns the existing group's info.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    backend = "nccl" if use_cuda else "gloo"
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    if not dist.is_initialized():
        if launched_by_torchrun():
            dist.init_process_group(backend=backend, device_id=torch_device if use_cuda else None)
        else:  # a plain process: a private group of one, no network port needed
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
        log.info("process group: rank %d/%d (local %d) backend %s on %s", rank, world_size, local_rank, backend,
                 torch_device)  # fmt: skip
    else:
        backend = dist.get_backend()
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world_size, local_rank, local_world_size, torch_device, backend)


def shutdown_distributed() -> None:
    """Leave the process group (safe to call twice)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor; a no-op copy with one process)."""
    out = values.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
