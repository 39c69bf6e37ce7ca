"""LoRA adapters with peft, as OpenVLA fine-tunes (DESIGN §8), and their merge into a plain model.

OpenVLA: ``LoraConfig(r=32, lora_alpha=min(r, 16), lora_dropout=0.0, target_modules="all-linear",
init_lora_weights="gaussian")``. peft's "all-linear" takes every ``nn.Linear`` of the model except the output head
(``get_output_embeddings()``, the LLM's ``lm_head``): the ViTs, the projector and the LLM layers. We also leave out
the Linear layers whose parameters never get a gradient (the ViTs' last block, after the feature layer): an
adapter there would only be dead weight, and DDP would wait for its gradient. The optional OFT modules (action
slots, proprio projector, L1 head) are small and task-specific: they train in full (peft ``modules_to_save``) and
``merge_and_unload`` puts the trained copies back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

FULLY_TRAINED_MODULES = ("action_queries", "proprio_projector", "l1_head")


def dead_linear_modules(model: nn.Module) -> list[str]:
    """Names of ``nn.Linear`` modules all of whose parameters the model reports as never used in forward."""
    unused = set(getattr(model, "unused_parameter_names", lambda: [])())
    dead = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            params = [f"{name}.{p}" for p, _ in module.named_parameters()]
            if params and all(p in unused for p in params):
                dead.append(name)
    return dead


def fresh_module_names(model: nn.Module, fresh: Sequence[str]) -> list[str]:
    """The modules that hold the parameters ``fresh`` (the base lacked them), for peft ``modules_to_save``.

    The leaf modules owning them (a Linear, a LayerNorm, the action slots): peft replaces a saved module by a
    wrapper that runs a trainable copy in ``forward``, so the modules must be ones the model calls (a container
    such as a ModuleDict of FiLM projections is indexed, not called). Those under ``FULLY_TRAINED_MODULES`` are
    covered already. A fresh parameter sitting on a module next to base parameters cannot train in full alone:
    that is an error naming it.
    """
    fresh = set(fresh)
    owners: dict[str, nn.Module] = {}
    for name in sorted(fresh):
        if name.split(".")[0] in FULLY_TRAINED_MODULES:
            continue
        owner, _, _ = name.rpartition(".")
        module = model.get_submodule(owner)
        own = [f"{owner}.{p}" for p, _ in module.named_parameters(recurse=False)]
        if not all(p in fresh for p in own):
            raise ValueError(f"{name}: a new parameter on a module whose other parameters come from the base "
                             f"({owner}); it cannot train in full on its own")  # fmt: skip
        owners[owner] = module
    return sorted(owners)


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: int,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    fully_trained: Sequence[str] = (),
) -> Any:
    """Freeze ``model`` and add LoRA adapters (gaussian init, so the adapted model starts equal to the base).

    ``fully_trained``: parameter names that train in full (peft ``modules_to_save``) besides the OFT modules —
    those a fine-tuning into new action options initialised fresh (``fresh_module_names``), e.g. FiLM projections.
    """
    from peft import LoraConfig, get_peft_model

    exclude = dead_linear_modules(model)
    # OFT's small new modules (action slots, proprio projector, L1 head) train in full, as OFT fine-tunes them.
    full = [name for name in FULLY_TRAINED_MODULES if hasattr(model, name)]
    extra = fresh_module_names(model, fully_trained)
    exclude += [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[0] in full]
    exclude += [n for n in extra if isinstance(model.get_submodule(n), nn.Linear)]
    full += extra
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        exclude_modules=exclude or None,
        modules_to_save=full or None,
        init_lora_weights="gaussian",
    )
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    log.info("LoRA r=%d alpha=%d on %s: %d of %d parameters trainable (%.2f%%), %d dead Linear layers skipped",
             rank, alpha, target_modules, trainable, total, 100.0 * trainable / total, len(exclude))  # fmt: skip
    return peft_model


def is_lora_parameter(name: str) -> bool:
    return "lora_" in name


def adapter_state_dict(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only (what ``save_pretrained`` of a PeftModel writes), on CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_adapter_state_dict(peft_model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"adapter checkpoint has keys this LoRA model lacks: {unexpected[:5]}")


def merge_lora(peft_model: Any) -> nn.Module:
    """Fold the adapters into the base weights on CPU and return the plain model (OpenVLA merges on CPU too)."""
    peft_model.to("cpu")
    return peft_model.merge_and_unload()
