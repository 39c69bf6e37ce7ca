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
