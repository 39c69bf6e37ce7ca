"""OpenVLA-OFT's additions, as optional parts of the one VLA: action slots, the attention mask of parallel
decoding, the proprio projector and the continuous (L1) action head.

Parallel decoding appends K·D *action slots* after the prompt. Their inputs are learned embeddings, one per slot
(``ActionQueries``): OFT feeds zero ("empty") embeddings, but a Llama layer without biases maps identical zero
inputs that see identical keys to identical outputs, so learned slot embeddings are what tells the slots apart.
The mask (``parallel_attention_mask``) is causal over the prompt and bidirectional among the slots; the prompt
never sees the slots, so the prompt's hidden states are the same as in a plain causal forward.
"""

from __future__ import annotations

import torch
from torch import nn


class ActionQueries(nn.Module):
    """Learned input embeddings of the K·D action slots, ``weight`` [K·D, H]."""

    def __init__(self, num_slots: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_slots, hidden_size))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.weight[None].expand(batch_size, -1, -1)


class ProprioProjector(nn.Module):
    """Normalized proprio state [B, P] → one token embedding [B, 1, H] (OFT: Linear, GELU, Linear)."""

    def __init__(self, proprio_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, hidden_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(proprio)))[:, None]


class ResidualMLPBlock(nn.Module):
    """x + Linear(GELU(Linear(LayerNorm(x))))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class L1ActionHead(nn.Module):
    """MLP-ResNet over the slots' hidden states: [B, K·D, H] → normalized actions [B, K, D] in [−1, 1] range.

    As OFT, the D slots of one future step are concatenated (D·H features) and mapped to that step's D values.
    """

    def __init__(self, hidden_size: int, action_dim: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.action_dim = action_dim
        width = hidden_size
        self.norm_in = nn.LayerNorm(action_dim * hidden_size)
        self.fc_in = nn.Linear(action_dim * hidden_size, width)
        self.blocks = nn.ModuleList(ResidualMLPBlock(width) for _ in range(num_blocks))
        self.norm_out = nn.LayerNorm(width)
        self.fc_out = nn.Linear(width, action_dim)

    def forward(self, slot_hidden: torch.Tensor) -> torch.Tensor:
        bsz, slots, hidden = slot_hidden.shape
        x = slot_hidden.reshape(bsz, slots // self.action_dim, self.action_dim * hidden)
        x = self.fc_in(self.norm_in(x))
        for block in self.blocks:
            x = block(x)
        return self.fc_out(self.norm_out(x))


def parallel_attention_mask(padding_mask: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Boolean [B, 1, T, T] mask (True = may attend) for a left-padded prompt followed by ``num_slots`` slots.

    ``padding_mask`` [B, T] marks real positions (the slots, the last ``num_slots``, are real). Query i attends
    key j when j is real and j ≤ i (causal), or when both are slots (bidirectional). Padding queries attend
    themselves only, so no row is empty (an all-masked row makes sdpa return NaN); no real query sees them.
    """
    total = padding_mask.shape[1]
    device = padding_mask.device
    idx = torch.arange(total, device=device)
    causal = idx[None, :] <= idx[:, None]  # [T, T]: key j ≤ query i
    is_slot = idx >= total - num_slots
    slots = is_slot[:, None] & is_slot[None, :]
    allowed = (causal | slots)[None] & padding_mask.bool()[:, None, :]  # [B, T, T]
    allowed = allowed | torch.eye(total, dtype=torch.bool, device=device)[None]
    return allowed[:, None]


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask → additive float mask (0 where allowed, the dtype's minimum elsewhere), for every attention."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
