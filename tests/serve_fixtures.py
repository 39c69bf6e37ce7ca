"""Test helpers for the policy server: a fast stand-in predictor with the server's predictor interface."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np


class EchoPredictor:
    """Answers an action computed from the request itself, so a test can tell whose answer it got.

    action = [image[0, 0, 0], image mean, len(instruction), index of unnorm_key, 0, 0, 1] (float32, shape (7,)).
    """

    def __init__(self, unnorm_keys: Sequence[str] = ("libero_embedded",)) -> None:
        self.unnorm_keys = list(unnorm_keys)
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    @staticmethod
    def expected(image: np.ndarray, instruction: str, key_index: int = 0) -> np.ndarray:
        return np.array([image[0, 0, 0], image.mean(), len(instruction.strip()), key_index, 0, 0, 1], dtype=np.float32)

    def predict_batch(self, images, instructions, unnorm_key):
        with self._lock:
            self.batch_sizes.append(len(images))
        index = self.unnorm_keys.index(unnorm_key) if unnorm_key is not None else 0
        return [self.expected(img, ins, index) for img, ins in zip(images, instructions, strict=True)]


class ChunkPredictor:
    """A stand-in chunking (OFT) model: each request gets a known (K, 7) chunk ((7,) when K = 1, as the model).

    Row k of a request's chunk = [image[0, 0, 0], image mean, len(instruction), index of unnorm_key, sum of the
    proprio state (0 without), k, 1], so a test can tell which request's prediction, and which row, it was answered.
    ``calls`` records every request that reached the model: (image[0, 0, 0], instruction, proprio or None).
    """

    def __init__(
        self, chunk: int = 4, unnorm_keys: Sequence[str] = ("libero_embedded",), proprio_dim: int | None = None
    ):
        self.action_chunk = chunk
        self.proprio_dim = proprio_dim
        self.unnorm_keys = list(unnorm_keys)
        self.calls: list[tuple[int, str, np.ndarray | None]] = []
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    @staticmethod
    def chunk(image: np.ndarray, instruction: str, k: int, key_index: int = 0, proprio=None) -> np.ndarray:
        state = float(np.sum(proprio)) if proprio is not None else 0.0
        head = [image[0, 0, 0], image.mean(), len(instruction.strip()), key_index, state]
        rows = np.array([[*head, i, 1] for i in range(k)], dtype=np.float32)
        return rows[0] if k == 1 else rows

    def predict_batch(self, images, instructions, unnorm_key, proprios=None):
        proprios = list(proprios) if proprios is not None else [None] * len(images)
        with self._lock:
            self.batch_sizes.append(len(images))
            for img, ins, state in zip(images, instructions, proprios, strict=True):
                self.calls.append((int(img[0, 0, 0]), ins, None if state is None else np.array(state)))
        index = self.unnorm_keys.index(unnorm_key) if unnorm_key is not None else 0
        return [
            self.chunk(img, ins, self.action_chunk, index, state)
            for img, ins, state in zip(images, instructions, proprios, strict=True)
        ]


def chunked_tiny_vla(seed: int = 0, chunk: int = 4, cameras: tuple[str, ...] = ("primary",), film: bool = False):
    """The tiny VLA as OpenVLA-OFT: K-action chunks decoded in parallel by the L1 head, with a proprio token
    (and ``cameras`` images, FiLM when ``film``: its projections are then randomised, not the identity).

    Its statistics carry a non-degenerate 8-D proprio entry per dataset, so the state changes the prediction.
    """
    import torch
    from hf_fixtures import norm_stats

    from openvla.model import build_vla, get_model_config

    stats = norm_stats()
    for i, entry in enumerate(stats.values()):
        scale = 1.0 + i
        entry["proprio"] = {
            "mean": [0.0] * 8,
            "std": [scale] * 8,
            "min": [-2.0 * scale] * 8,
            "max": [2.0 * scale] * 8,
            "q01": [-scale] * 8,
            "q99": [scale] * 8,
        }
    config = get_model_config("tiny")
    config.action_chunk = chunk
    config.parallel_decoding = True
    config.action_head = "l1"
    config.use_proprio = True
    config.proprio_dim = 8
    config.norm_stats = stats
    config.set_cameras(list(cameras))
    config.use_film = film
    torch.manual_seed(seed)
    model = build_vla(config, "sdpa").eval()
    if film:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if ".film." in name:
                    parameter.normal_(std=0.05)
    return model
