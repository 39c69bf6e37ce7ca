"""Helpers shared by the model tests: a seeded tiny VLA, the Mistral v1 tokenizer, fake data-pipeline frames."""

from __future__ import annotations

import functools

import numpy as np
import torch

from openvla.actions import ActionTokenizer
from openvla.model.batching import PaddedCollator, VLABatchTransform
from openvla.model.configs import get_model_config
from openvla.model.image_processing import PrismaticImageProcessor
from openvla.model.prompts import get_prompt_builder
from openvla.model.text_tokenizer import load_text_tokenizer
from openvla.model.vla import OpenVLAForActionPrediction, build_vla

INSTRUCTIONS = ["pick up the black bowl", "put the bowl on the plate", "open the top drawer of the cabinet please"]


def tiny_model(seed: int = 0) -> OpenVLAForActionPrediction:
    torch.manual_seed(seed)
    model = build_vla(get_model_config("tiny"))
    return model.eval()


@functools.cache
def mistral_tokenizer():
    return load_text_tokenizer("mistral-v1")


def norm_stats(dims: int = 7, key: str = "libero_embedded") -> dict:
    q01 = np.linspace(-1.0, -0.2, dims)
    q99 = np.linspace(0.3, 1.5, dims)
    mask = [True] * (dims - 1) + [False]
    return {key: {"action": {"q01": q01.tolist(), "q99": q99.tolist(), "mask": mask}}}


def fake_frame(seed: int, instruction: str, size: int = 112, chunk: int = 1, window: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation": {
            "image_primary": rng.integers(0, 256, (window, size, size, 3), dtype=np.uint8),
            "proprio": np.zeros((window, 8), np.float32),
            "pad_mask": np.ones(window, bool),
        },
        "action": rng.uniform(-1, 1, (window, chunk, 7)).astype(np.float32),
        "action_pad_mask": np.zeros((window, chunk), bool),
        "task": {"language_instruction": instruction.encode()},
        "dataset_name": b"libero_embedded",
    }


def tiny_batch_transform() -> VLABatchTransform:
    config = get_model_config("tiny")
    return VLABatchTransform(
        mistral_tokenizer(),
        ActionTokenizer(config.base_vocab_size, config.n_action_bins),
        PrismaticImageProcessor.from_vla_config(config),
        functools.partial(get_prompt_builder, config.llm_backbone_id),
    )


def tiny_batch(n: int = 3, seed: int = 0) -> dict:
    transform = tiny_batch_transform()
    items = [transform(fake_frame(seed + i, INSTRUCTIONS[i % len(INSTRUCTIONS)])) for i in range(n)]
    return PaddedCollator(mistral_tokenizer().pad_token_id)(items)
