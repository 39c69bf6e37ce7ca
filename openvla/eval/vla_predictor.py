"""Batched action prediction for evaluation: images + instructions → action tokens, normalized and real actions.

``ActionPredictor.predict`` runs exactly what ``OpenVLAForActionPrediction.predict_action`` runs (prompt →
``generate_action_tokens`` → ``action_tokenizer.decode`` → ``unnormalize``) but keeps the intermediate token ids and
normalized values, which the offline metrics need (token accuracy, L1 in normalized space). Images go through the
image processor's ``apply_transform`` one by one, as ``VLABatchTransform`` does for training.

Models with OpenVLA-OFT options (``action_chunk`` K > 1, ``parallel_decoding``, the ``l1`` head or ``use_proprio``)
predict a chunk of K normalized actions per frame (``predict_normalized_chunk``; the raw proprio state, one per
image, is normalized with the dataset's ``proprio`` statistics first). The chunk's FIRST action is the current step:
it is what ``Prediction.tokens`` / ``normalized`` / ``actions`` hold, so the offline metrics compare it with the
recorded action exactly as for OpenVLA; the whole chunk is kept in ``Prediction.chunk`` (normalized) and
``Prediction.chunk_actions`` (unnormalized). Action tokens: with the ``tokens`` head the greedy ids the model
generated (token by token, or the argmax of the parallel slots); with the ``l1`` head the action tokenizer's
*encoding of the regressed normalized values*, so that "token accuracy" is bin agreement with the true action's bin
(beware the degenerate last bin: a value exactly 1.0, e.g. an open gripper in [0, 1], has its own id, which a
regressed 0.999 misses). Plain OpenVLA models (K = 1, tokens head, no proprio) run exactly the path they always did.

``load_predictor(model_dir)`` loads an exported HF directory through transformers' Auto classes (``import openvla``
registers them) and falls back to ``OpenVLAForActionPrediction.from_pretrained`` plus the processor pieces for a
plain ``save_pretrained`` checkpoint (no processor files: the image processor comes from the model config and the
text tokenizer from ``tokenizer``, params ``model.tokenizer``). A fitted action tokenizer saved with the model
(``action_tokenizer/``, the ``bins`` stage's quantile bins) replaces the uniform one, so tokens decode as in training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One batch of predictions, each (B, action_dim); chunked models also keep the whole (B, K, action_dim) chunk.

    For a chunk, ``tokens`` / ``normalized`` / ``actions`` are its first action (the current step).
    """

    tokens: np.ndarray  # int64 action token ids (greedy; the l1 head: the tokenizer's encoding of its values)
    normalized: np.ndarray  # float32 decoded bin values (l1 head: regressed values) in the model's normalized space
    actions: np.ndarray  # float32 unnormalized with the unnorm_key's statistics (what predict_action returns)
    chunk: np.ndarray | None = None  # float32 (B, K, D) normalized chunk; None for plain OpenVLA models
    chunk_actions: np.ndarray | None = None  # float32 (B, K, D) the chunk unnormalized; None for OpenVLA models


class ActionPredictor:
    """A VLA + its image processor + text tokenizer, predicting batches of actions."""

    def __init__(self, model: Any, image_processor: Any, text_tokenizer: Any) -> None:
        self.model = model
        self.image_processor = image_processor
        self.text_tokenizer = text_tokenizer
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @property
    def image_size(self) -> int:
        """The square size the data pipeline resizes frames to (the model's input size)."""
        return int(self.model.config.image_sizes[0])

    @property
    def action_tokenizer(self) -> Any:
        return self.model.action_tokenizer

    @property
    def chunk_size(self) -> int:
        """K, the actions predicted per query (1 for OpenVLA)."""
        return int(getattr(self.model.config, "action_chunk", 1) or 1)

    @property
    def action_head(self) -> str:
        """The action head: "tokens" (discrete action tokens, OpenVLA) or "l1" (continuous regression, OFT)."""
        return str(getattr(self.model.config, "action_head", "tokens") or "tokens")

    @property
    def uses_proprio(self) -> bool:
        """Whether the model reads the proprio state (``predict`` then needs ``proprios``)."""
        return bool(getattr(self.model.config, "use_proprio", False))

    @property
    def predicts_chunks(self) -> bool:
        """True for a model with OpenVLA-OFT options (K > 1, parallel decoding, l1 head, proprio): ``predict`` goes
        through the chunk path; False for a plain OpenVLA model (token by token, one step)."""
        config = self.model.config
        return (
            self.chunk_size > 1
            or bool(getattr(config, "parallel_decoding", False))
            or self.action_head != "tokens"
            or self.uses_proprio
        )

    def action_stats(self, unnorm_key: str | None) -> dict:
        """The ``action`` statistics predictions are unnormalized with (``UnnormKeyError`` lists the keys)."""
        return self.model.get_action_stats(unnorm_key or None)

    def prompts(self, instructions: Sequence[str]) -> list[str]:
        from openvla.model.prompts import build_action_prompt

        return [build_action_prompt(text, self.model.config.llm_backbone_id) for text in instructions]

    def inputs(self, images: Sequence[np.ndarray], instructions: Sequence[str]) -> dict[str, Any]:
        """Right-padded ``input_ids`` / ``attention_mask`` and ``pixel_values`` [B, 3·n, S, S] on the model's device."""
        import torch

        if len(images) != len(instructions):
            raise ValueError(f"ActionPredictor: {len(images)} images but {len(instructions)} instructions")
        rows = [self.text_tokenizer(p, add_special_tokens=True).input_ids for p in self.prompts(instructions)]
        length = max(len(r) for r in rows)
        pad = self.model.config.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        pixel_values = torch.stack([self.image_processor.apply_transform(np.asarray(im)) for im in images])
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
            "pixel_values": pixel_values.to(self.device, self.dtype),
        }

    def predict(
        self,
        images: Sequence[np.ndarray],
        instructions: Sequence[str],
        unnorm_key: str | None,
        proprios: Sequence[np.ndarray] | None = None,
    ) -> Prediction:
        """Greedy action tokens for each (image, instruction) and their decoded / unnormalized values.

        ``proprios``: the raw (unnormalized) proprio state of each image, for a model with ``use_proprio`` (the
        model normalizes them with its ``unnorm_key`` proprio statistics); ignored by a model without it. A model
        with OpenVLA-OFT options predicts a chunk per image (see the module docstring); a plain OpenVLA model runs
        the token-by-token path it always did.
        """
        if self.predicts_chunks:
            return self._predict_chunks(images, instructions, unnorm_key, proprios)
        import torch

        from openvla.actions import unnormalize

        stats = self.action_stats(unnorm_key)
        inputs = self.inputs(images, instructions)
        with torch.inference_mode():
            tokens = self.model.generate_action_tokens(
                inputs["input_ids"],
                inputs["pixel_values"],
                inputs["attention_mask"],
                num_tokens=len(stats["q01"]),
                do_sample=False,
            )
        tokens = tokens.cpu().numpy().astype(np.int64)
        normalized = np.asarray(self.action_tokenizer.decode(tokens), dtype=np.float32)
        kind = getattr(self.model.config, "action_normalization", "bounds_q99")
        actions = np.asarray(unnormalize(normalized, stats, kind=kind), dtype=np.float32)
        return Prediction(tokens=tokens, normalized=normalized, actions=actions)

    def normalized_proprio(self, proprios: Sequence[np.ndarray], unnorm_key: str | None) -> Any:
        """Raw states (one per image) → the normalized [B, P] tensor the model reads, on the model's device."""
        rows = [np.asarray(p, dtype=np.float64).reshape(-1) for p in proprios]
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"ActionPredictor: proprio states of different sizes {sorted({len(r) for r in rows})}")
        return self.model.normalize_proprio(np.stack(rows), unnorm_key or None).to(self.device)

    def _predict_chunks(
        self,
        images: Sequence[np.ndarray],
        instructions: Sequence[str],
        unnorm_key: str | None,
        proprios: Sequence[np.ndarray] | None,
    ) -> Prediction:
        """The chunk path: [B, K, D] normalized actions, tokens of the first action, unnormalized chunk."""
        import torch

        from openvla.actions import unnormalize

        config = self.model.config
        stats = self.action_stats(unnorm_key)
        dim = len(stats["q01"])
        if dim != int(config.action_dim) and (self.chunk_size > 1 or config.parallel_decoding):
            raise ValueError(
                f"norm_stats[{unnorm_key!r}] actions have {dim} dimensions, the model's action_dim is "
                f"{config.action_dim}"
            )
        inputs = self.inputs(images, instructions)
        proprio = None
        if self.uses_proprio:
            if proprios is None:
                raise ValueError(
                    "this model reads the proprio state (use_proprio): pass proprios, one raw state per image"
                )
            if len(proprios) != len(images):
                raise ValueError(f"ActionPredictor: {len(images)} images but {len(proprios)} proprio states")
            proprio = self.normalized_proprio(proprios, unnorm_key)
        ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]
        batch, k = len(images), self.chunk_size
        with torch.inference_mode():
            if self.action_head == "tokens":
                # the ids predict_normalized_chunk decodes, kept for the token metrics
                all_tokens = self.model.predict_chunk_tokens(ids, pixels, mask, proprio, action_dim=dim)
                chunk = np.asarray(self.action_tokenizer.decode(all_tokens), dtype=np.float32).reshape(batch, k, dim)
                first_tokens = all_tokens[:, 0]
            else:  # l1 head: regressed values in [-1, 1]; tokens = their bins (token accuracy = bin agreement)
                chunk = self.model.predict_normalized_chunk(ids, pixels, mask, proprio=proprio, action_dim=dim)
                chunk = np.asarray(chunk, dtype=np.float32).reshape(batch, k, dim)
                first_tokens = np.asarray(self.action_tokenizer.encode(chunk[:, 0]), dtype=np.int64)
        kind = getattr(config, "action_normalization", "bounds_q99")
        chunk_actions = np.asarray(unnormalize(chunk, stats, kind=kind), dtype=np.float32)
        return Prediction(
            tokens=first_tokens,
            normalized=chunk[:, 0].copy(),
            actions=chunk_actions[:, 0].copy(),
            chunk=chunk,
            chunk_actions=chunk_actions,
        )


def load_predictor(
    model_dir: str | Path, device: str = "auto", dtype: str = "auto", tokenizer: str = "mistral-v1"
) -> ActionPredictor:
    """Load an HF model directory (our export, an official-format one, or a ``save_pretrained`` checkpoint)."""
    from openvla.hf.loading import attach_action_tokenizer, load_exported, resolve_device_dtype

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; pass an exported model directory (`openvla export`)")
    torch_device, torch_dtype = resolve_device_dtype(device, dtype, "eval_bridge.dtype")
    has_processor = (model_dir / "preprocessor_config.json").is_file() and (
        model_dir / "tokenizer_config.json"
    ).is_file()
    if has_processor:
        try:
            model, processor = load_exported(model_dir, device, dtype, "eval_bridge.dtype")
            return ActionPredictor(model, processor.image_processor, processor.tokenizer)
        except Exception as err:  # any failure of the Auto path falls back to our classes
            log.warning(
                "%s: Auto-class loading failed (%s: %s); loading with our classes", model_dir, type(err).__name__, err
            )
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.text_tokenizer import load_text_tokenizer
    from openvla.model.vla import OpenVLAForActionPrediction

    model = OpenVLAForActionPrediction.from_pretrained(str(model_dir), dtype=torch_dtype)
    if (model_dir / "preprocessor_config.json").is_file():
        image_processor = PrismaticImageProcessor.from_pretrained(str(model_dir))
    else:
        image_processor = PrismaticImageProcessor.from_vla_config(model.config)
    spec = str(model_dir) if (model_dir / "tokenizer_config.json").is_file() else tokenizer
    text_tokenizer = load_text_tokenizer(spec)
    attach_action_tokenizer(model, model_dir)  # a fitted (e.g. quantile) tokenizer decodes as in training
    model.to(torch_device).eval()
    log.info("loaded %s (%s) on %s, %s", model_dir, type(model).__name__, torch_device, torch_dtype)
    return ActionPredictor(model, image_processor, text_tokenizer)
