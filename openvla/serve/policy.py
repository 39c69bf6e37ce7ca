"""The served policy: an ``OpenVLAForActionPrediction`` and its processor behind ``predict_batch``.

One request = one uint8 image + one instruction. A batch builds OpenVLA's prompt for each instruction
(``build_action_prompt``: ``In: What action should the robot take to {instruction}?\\nOut:``), preprocesses the images
exactly as ``AutoProcessor`` does (``Image.fromarray(image).convert("RGB")`` as OpenVLA's deploy server), and makes a
single ``predict_action`` call; the model's batched decoding gives each row the tokens it would get alone.

An OpenVLA model (``action_chunk`` K = 1) answers one (D,) action per request, an OFT model (K > 1) a (K, D) chunk.
A model with ``use_proprio`` gets the requests' raw robot states as one (B, P) array (``predict_action`` normalizes
them with the dataset's proprio statistics).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class HFPredictor:
    """``predict_batch`` over an OpenVLA model + ``PrismaticProcessor`` (the server's ``BatchPredictor``)."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.unnorm_keys: list[str] = list(model.config.norm_stats or {})
        if not self.unnorm_keys:
            log.warning("the model has no norm_stats: /act cannot unnormalize actions and will answer 500")
        self._device = next(model.parameters()).device
        self._dtype = next(model.parameters()).dtype
        config = model.config
        self.action_chunk: int = int(getattr(config, "action_chunk", 1))
        # The state size when the model reads the robot state (requests must then carry 'proprio'), else None.
        self.proprio_dim: int | None = int(config.proprio_dim) if getattr(config, "use_proprio", False) else None

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        instructions: Sequence[str],
        unnorm_key: str | None,
        proprios: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Images (H, W, 3) uint8 + instructions (+ raw states (P,)) → one float32 (D,) or (K, D) per request."""
        from PIL import Image

        from openvla.model.prompts import build_action_prompt
        from openvla.serve.payload import PayloadError

        extra: dict[str, Any] = {}
        if self.proprio_dim is not None:
            if proprios is None or any(p is None for p in proprios):
                raise PayloadError(422, "missing field 'proprio': this model uses proprioception (use_proprio)")
            extra["proprio"] = np.stack([np.asarray(p, dtype=np.float64) for p in proprios])

        prompts = [build_action_prompt(text, self.model.config.llm_backbone_id) for text in instructions]
        pil_images = [Image.fromarray(np.asarray(image)).convert("RGB") for image in images]
        inputs = self.processor(prompts if len(prompts) > 1 else prompts[0], pil_images, padding=len(prompts) > 1)
        inputs = {k: v.to(self._device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self._dtype)
        actions = np.asarray(self.model.predict_action(**inputs, unnorm_key=unnorm_key, do_sample=False, **extra))
        if len(images) == 1:
            actions = actions[None]
        return [np.asarray(a, dtype=np.float32) for a in actions]


def load_hf_predictor(model_dir: str | Path, device: str = "auto", dtype: str = "auto") -> HFPredictor:
    """Load an exported (or official-format) directory once, through the Auto classes, and wrap it."""
    from openvla.hf.loading import load_exported

    return HFPredictor(*load_exported(model_dir, device, dtype))
