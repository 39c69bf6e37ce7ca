"""What training needs around the VLA: tokenizers + image processor + batch transform, the loss/metrics objective,
and the writer of a complete Hugging Face directory (weights, config with ``norm_stats``, tokenizer, image
processor, ``dataset_statistics.json``, the action tokenizer).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openvla.io import atomic_write_json
from openvla.train.metrics import action_token_sums, parallel_action_sums

log = logging.getLogger(__name__)

ACTION_TOKENIZER_DIR = "action_tokenizer"
STATISTICS_FILE = "dataset_statistics.json"
MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "labels")
OPTIONAL_MODEL_INPUTS = ("proprio", "action_labels", "actions")  # chunks / parallel decoding / proprio (OFT)


@dataclass
class VLAComponents:
    """Everything besides the weights that turns frames into batches and a model into a usable directory."""

    text_tokenizer: Any
    action_tokenizer: Any
    image_processor: Any
    transform: Any  # VLABatchTransform
    collator: Any  # PaddedCollator


def build_components(
    model_config: Any, text_tokenizer_spec: str, action_tokenizer_dir: str | Path | None
) -> VLAComponents:
    """Tokenizers (text from ``model.tokenizer``, actions from the ``bins`` stage), image processor, transforms.

    ``action_tokenizer_dir`` None: OpenVLA's uniform bins over the model's unpadded vocabulary.
    """
    from openvla.actions import ActionTokenizer, load_action_tokenizer
    from openvla.model import PaddedCollator, PrismaticImageProcessor, VLABatchTransform
    from openvla.model.prompts import get_prompt_builder
    from openvla.model.text_tokenizer import load_text_tokenizer

    text_tokenizer = load_text_tokenizer(text_tokenizer_spec)
    if action_tokenizer_dir is None:
        action_tokenizer = ActionTokenizer(model_config.base_vocab_size, model_config.n_action_bins)
    else:
        action_tokenizer = load_action_tokenizer(action_tokenizer_dir)
    base_vocab = model_config.base_vocab_size
    if action_tokenizer.vocab_size != base_vocab:
        raise ValueError(f"{action_tokenizer_dir}: action tokenizer vocab_size {action_tokenizer.vocab_size} differs "
                         f"from the model's unpadded vocabulary {base_vocab} "
                         "(model.name / model.tokenizer mismatch?)")  # fmt: skip
    image_processor = PrismaticImageProcessor.from_vla_config(model_config)
    transform = VLABatchTransform(
        text_tokenizer,
        action_tokenizer,
        image_processor,
        functools.partial(get_prompt_builder, model_config.llm_backbone_id),
        action_chunk=model_config.action_chunk,
        parallel_decoding=model_config.parallel_decoding,
        use_proprio=model_config.use_proprio,
        cameras=tuple(model_config.camera_roles),
    )
    collator = PaddedCollator(text_tokenizer.pad_token_id, model_max_length=model_config.llm_max_length)
    return VLAComponents(text_tokenizer, action_tokenizer, image_processor, transform, collator)


def model_inputs(batch: Mapping[str, Any], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The batch entries the model's forward takes (the optional ones when the collator made them)."""
    keys = MODEL_INPUTS + tuple(k for k in OPTIONAL_MODEL_INPUTS if k in batch)
    return {k: batch[k].to(device, non_blocking=True) for k in keys}


def prediction_of(output: Any) -> torch.Tensor:
    """What a forward predicted: logits (tokens head) or the normalized action chunk (L1 head)."""
    return output.logits if output.logits is not None else output.actions


class VLAObjective:
    """The model's loss plus action-token accuracy and L1 sums (per dataset when mixed).

    Token by token: causal-LM loss over the action tokens (and EOS). Parallel decoding: cross-entropy over the K·D
    slots (tokens head) or L1 against the normalized chunk (L1 head, which has no token accuracy).
    """

    def __init__(self, action_tokenizer: Any, device: torch.device, autocast_bf16: bool = False) -> None:
        """``autocast_bf16``: run forward under bf16 autocast (DDP / one process on GPU; FSDP casts by itself)."""
        self.action_tokenizer = action_tokenizer
        self.device = device
        self.autocast_bf16 = autocast_bf16

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = model_inputs(batch, self.device)
        if "action_labels" in inputs:  # parallel decoding: the loss is over the slots
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
                out = model(**inputs)
            with torch.no_grad():
                sums = parallel_action_sums(out, inputs["action_labels"], inputs["actions"], self.action_tokenizer,
                                            batch.get("dataset_names"))  # fmt: skip
            return out.loss, sums
        # Only the positions that predict labelled tokens need the 32k-vocabulary head (same loss, much cheaper).
        keep = min_logits_to_keep(inputs["labels"])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            out = model(**inputs, logits_to_keep=keep)
        with torch.no_grad():
            sums = action_token_sums(
                out.logits.detach(),
                inputs["labels"],
                self.action_tokenizer.action_token_begin_idx,
                # FAST ids decode per chunk, not per value: accuracy only (no per-token L1)
                decode=None
                if getattr(self.action_tokenizer, "scheme", None) == "fast"
                else self.action_tokenizer.decode,
                dataset_names=batch.get("dataset_names"),
                logits_to_keep=keep,
            )
        return out.loss, sums


def min_logits_to_keep(labels: torch.Tensor) -> int:
    """Smallest K such that the last K logits cover every labelled text position (the model's own rule)."""
    from openvla.model import OpenVLAForActionPrediction

    return OpenVLAForActionPrediction.min_logits_to_keep(labels)


def batch_size_of(batch: Mapping[str, Any]) -> int:
    return int(batch["input_ids"].shape[0])


def freeze_unused_parameters(model: nn.Module) -> int:
    """Freeze parameters that never receive a gradient (the ViTs' last block, heads): DDP requires it, and
    AdamW should not decay them. Returns how many tensors were frozen."""
    names = set(getattr(model, "unused_parameter_names", lambda: [])())
    count = 0
    for name, param in model.named_parameters():
        if name in names and param.requires_grad:
            param.requires_grad_(False)
            count += 1
    return count


def wrap_classes_of(model: nn.Module) -> set[type[nn.Module]]:
    """FSDP shard-group classes (ViT blocks, decoder layers, projector) as the model names them."""
    fn = getattr(model, "fsdp_wrap_classes", None)
    return set(fn()) if fn is not None else set()


def write_hf_directory(
    directory: str | Path,
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor] | None,
    components: VLAComponents,
    statistics: Mapping[str, Any],
) -> None:
    """A directory ``OpenVLAForActionPrediction.from_pretrained`` loads, with ``norm_stats`` = ``statistics``.

    ``state_dict`` is the gathered full state (training) or None to save the model's own tensors (merged LoRA).
    """
    from openvla.actions import save_action_tokenizer

    directory = Path(directory)
    model.config.norm_stats = dict(statistics)
    kwargs = {"state_dict": dict(state_dict)} if state_dict is not None else {}  # save_pretrained pops from it
    model.save_pretrained(directory, safe_serialization=True, **kwargs)
    components.text_tokenizer.save_pretrained(directory)
    components.image_processor.save_pretrained(directory)
    atomic_write_json(directory / STATISTICS_FILE, dict(statistics))
    save_action_tokenizer(components.action_tokenizer, directory / ACTION_TOKENIZER_DIR)
