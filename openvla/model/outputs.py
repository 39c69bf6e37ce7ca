"""What the VLA's forward passes return, and the label value the loss ignores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

IGNORE_INDEX = -100  # labels at image patches, prompt tokens and padding


@dataclass
class OpenVLAOutput(ModelOutput):
    """Output of ``OpenVLAForActionPrediction.forward``; ``logits`` cover the full multimodal sequence."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Any = None  # the LLM's KV cache (transformers ≥ 5.2 calls it `cache`, OpenVLA `past_key_values`)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    projector_features: torch.Tensor | None = None
    actions: torch.Tensor | None = None  # L1 head: normalized action chunk [B, K, D]

    @property
    def past_key_values(self) -> Any:
        return self.cache
