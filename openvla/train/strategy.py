"""How the model is spread over processes: FSDP (``fully_shard``, torch's FSDP2), DDP, or nothing.

FSDP: every module of ``wrap_classes`` (ViT blocks, Llama decoder layers, the projector for the VLA) becomes its own
shard group, then the root; full-shard within a node, hybrid (replicate across nodes, shard within) when the job
spans several nodes. FSDP2 keeps the original parameters (as DTensors), so frozen and trainable parameters mix
freely in a group and the optimizer sees the real parameter names (what FSDP1 needed ``use_orig_params`` for).
Mixed precision: bf16 parameters/activations with fp32 gradient reduction on GPU, plain fp32 on CPU (gloo has no
bf16 speed-up and CPU bf16 matmuls are slow).

State dicts go through ``torch.distributed.checkpoint.state_dict``, which speaks FSDP, DDP and plain modules alike
and strips wrapper prefixes, so a checkpoint written by one strategy loads into a plain model or another strategy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from openvla.train.distributed import DistInfo

log = logging.getLogger(__name__)

Strategy = Literal["fsdp", "ddp", "none"]
Precision = Literal["auto", "fp32", "bf16"]


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """ "auto" → bf16 on CUDA, fp32 on CPU (DESIGN §7)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def _fsdp_mesh(info: DistInfo) -> Any:
    """1-D mesh on one node (full shard); 2-D (replicate across nodes, shard within) for hybrid sharding."""
    from torch.distributed.device_mesh import init_device_mesh

    device_type = info.device.type
    if info.num_nodes > 1:
        return init_device_mesh(
            device_type, (info.num_nodes, info.local_world_size), mesh_dim_names=("replicate", "shard")
        )
    return init_device_mesh(device_type, (info.world_size,), mesh_dim_names=("shard",))


def effective_strategy(strategy: Strategy, info: DistInfo, precision: Precision = "auto") -> Strategy:
    """The strategy to run: ``strategy``, except FSDP on a single process in fp32, which runs the plain module.

    One rank shards nothing and fp32 casts nothing, so FSDP there only routes every parameter op through DTensor:
    the embedded pretrain's step took 0.35 s under it against 0.30 s plain (2-core CPU), with the same parameters
    bit for bit after 110 steps. bf16 keeps FSDP on one process too: its mixed-precision policy (bf16 compute,
    fp32 master weights) is not what autocast on a plain module computes.
    """
    if strategy == "fsdp" and info.world_size == 1 and resolve_precision(precision, info.device) == "fp32":
        return "none"
    return strategy


def wrap_model(
    model: nn.Module,
    strategy: Strategy,
    info: DistInfo,
    *,
    wrap_classes: Iterable[type[nn.Module]] = (),
    precision: Precision = "auto",
    activation_checkpointing: bool = False,
) -> nn.Module:
    """Move ``model`` to this rank's device and apply the strategy; returns the module to call in training.

    With FSDP the same module object is returned (sharded in place); with DDP the ``DistributedDataParallel``
    wrapper. ``activation_checkpointing`` recomputes the activations of each ``wrap_classes`` block in backward.
    """
    model.to(info.device)
    if activation_checkpointing:
        enable_activation_checkpointing(model, wrap_classes)
    if strategy == "none":
        if info.world_size > 1:
            raise ValueError(f"strategy 'none' cannot run on {info.world_size} processes; use 'fsdp' or 'ddp'")
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    if strategy != "fsdp":
        raise ValueError(f"unknown training strategy {strategy!r}; expected 'fsdp', 'ddp' or 'none'")

    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = _fsdp_mesh(info)
    mp = MixedPrecisionPolicy()
    if resolve_precision(precision, info.device) == "bf16":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    classes = tuple(wrap_classes)
    groups = [m for m in model.modules() if classes and isinstance(m, classes) and m is not model]
    # Innermost first: a wrapped block never contains a block sharded after it.
    for module in reversed(groups):
        fully_shard(module, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    log.info("FSDP: %d shard groups + root, mesh %s, precision %s", len(groups), tuple(mesh.shape),
             resolve_precision(precision, info.device))  # fmt: skip
    return model


def enable_activation_checkpointing(model: nn.Module, wrap_classes: Iterable[type[nn.Module]]) -> None:
    """Recompute activations of every ``wrap_classes`` block during backward (saves memory, costs ~30% time).

    Transformers models use their own switch (which also turns off the KV cache); other modules get torch's
    non-reentrant checkpoint wrapper.
    """
    classes = tuple(wrap_classes)
    if getattr(model, "supports_gradient_checkpointing", False):  # the VLA: its LLM layers and ViT blocks
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    apply_activation_checkpointing(model, check_fn=lambda m: bool(classes) and isinstance(m, classes))


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under a DDP wrapper (FSDP2 shards in place, so it is the module itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def full_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's parameters and buffers on rank 0's CPU (other ranks get ``{}``); a collective call."""
    multi = dist.is_initialized() and dist.get_world_size() > 1
    options = StateDictOptions(full_state_dict=True, cpu_offload=multi)
    state = get_model_state_dict(model, options=options)
    if not multi:
        state = {k: v.detach().cpu() for k, v in state.items()}
    return state


def full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter names, gathered on rank 0's CPU; a collective call."""
    multi = dist.is_initialized() and dist.get_world_size() > 1
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                cpu_offload=multi))  # fmt: skip


def load_full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a state from ``full_optimizer_state_dict`` (every rank passes the same full state)."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm (DTensor-aware: the norm is reduced over shards); returns the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros(())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP
        norm = norm.full_tensor()
    return norm.detach()


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Skip (or resume) the gradient all-reduce/reduce-scatter during gradient-accumulation micro-steps."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)
    elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model.require_backward_grad_sync = enabled
