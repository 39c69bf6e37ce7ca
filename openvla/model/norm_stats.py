"""(Un)normalization with the dataset statistics a model carries (``config.norm_stats``, DESIGN §5).

``unnorm_key`` names the dataset whose statistics turn the model's normalized actions back into robot units (and
normalize its proprio input). A model trained on one dataset needs none; one trained on several refuses to guess
and lists the keys — OpenVLA's most common user confusion, answered by the error message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class UnnormKeyError(KeyError, ValueError):
    """``unnorm_key`` is missing or unknown; the message lists the datasets in ``norm_stats``."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class NormStatsMixin:
    """The ``norm_stats`` lookups of ``OpenVLAForActionPrediction`` (a mixin: it reads ``self.config``)."""

    def _norm_stats_entry(self, unnorm_key: str | None) -> dict:
        norm_stats = self.config.norm_stats or {}
        if not norm_stats:
            raise UnnormKeyError("model config has no norm_stats: set config.norm_stats to the dataset statistics JSON")
        if unnorm_key is None:
            if len(norm_stats) != 1:
                raise UnnormKeyError(
                    f"the model was trained on several datasets; pass unnorm_key, one of {sorted(norm_stats)}"
                )
            unnorm_key = next(iter(norm_stats))
        if unnorm_key not in norm_stats:
            raise UnnormKeyError(f"unnorm_key {unnorm_key!r} not in norm_stats; available keys: {sorted(norm_stats)}")
        return norm_stats[unnorm_key]

    def get_action_stats(self, unnorm_key: str | None = None) -> dict:
        """``norm_stats[unnorm_key]["action"]`` (the key may be omitted when there is exactly one dataset)."""
        return self._norm_stats_entry(unnorm_key)["action"]

    def get_action_dim(self, unnorm_key: str | None = None) -> int:
        return len(self.get_action_stats(unnorm_key)["q01"])

    def normalize_proprio(self, proprio: Any, unnorm_key: str | None = None) -> torch.Tensor:
        """Raw proprio state (P,) or [B, P] → normalized float tensor [B, P] with the dataset's proprio stats."""
        from openvla.actions import normalize

        entry = self._norm_stats_entry(unnorm_key)
        if "proprio" not in entry:
            raise UnnormKeyError(f"norm_stats[{unnorm_key!r}] has no 'proprio' entry; the model needs it (use_proprio)")
        raw = proprio.detach().cpu().numpy() if isinstance(proprio, torch.Tensor) else np.asarray(proprio)
        raw = np.atleast_2d(raw.astype(np.float64))
        if raw.shape[-1] != self.config.proprio_dim:
            raise ValueError(
                f"proprio has {raw.shape[-1]} dimensions, the model expects proprio_dim={self.config.proprio_dim}"
            )
        values = normalize(raw, entry["proprio"], kind=self.config.action_normalization)
        return torch.as_tensor(np.asarray(values, dtype=np.float32))
