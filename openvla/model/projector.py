"""Projector from vision features to LLM embeddings (Prismatic's "gelu-mlp" and "fused-gelu-mlp").

Fused (two backbones): Linear(D → 4D) → GELU → Linear(4D → H) → GELU → Linear(H → H).
Single backbone: Linear(D → H) → GELU → Linear(H → H). All with bias; names fc1/fc2/fc3 as the official checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn


class PrismaticProjector(nn.Module):
    def __init__(self, use_fused_vision_backbone: bool, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.use_fused_vision_backbone = use_fused_vision_backbone
        if use_fused_vision_backbone:
            initial_dim = 4 * vision_dim
            self.fc1 = nn.Linear(vision_dim, initial_dim, bias=True)
            self.fc2 = nn.Linear(initial_dim, llm_dim, bias=True)
            self.fc3 = nn.Linear(llm_dim, llm_dim, bias=True)
            self.act_fn1 = nn.GELU()
            self.act_fn2 = nn.GELU()
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim, bias=True)
            self.fc2 = nn.Linear(llm_dim, llm_dim, bias=True)
            self.act_fn1 = nn.GELU()

    def forward(self, patch_features: torch.Tensor) -> torch.Tensor:
        """[B, P, D] → [B, P, H]."""
        x = self.act_fn1(self.fc1(patch_features))
        if not self.use_fused_vision_backbone:
            return self.fc2(x)
        return self.fc3(self.act_fn2(self.fc2(x)))
