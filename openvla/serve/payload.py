"""Decode and validate one `/act` request body without trusting anything in it.

The wire format is OpenVLA's deploy format: a JSON object whose ``image`` is a json-numpy array
(``{"__numpy__": base64, "dtype": "|u1", "shape": [H, W, 3]}``), ``instruction`` a string and ``unnorm_key`` an
optional string. The official client may also wrap the whole object as a JSON string under ``"encoded"``.

Every client mistake becomes a ``PayloadError`` carrying the HTTP status (400 unparsable, 413 too large, 422
semantically wrong) and a message that says what was expected, so the server never answers 500 for one. The
declared dtype and shape are checked *before* any base64 is decoded, so a huge or hostile body costs little.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IMAGE_HINT = 'a json-numpy uint8 array of shape (H, W, 3): {"__numpy__": <base64>, "dtype": "|u1", "shape": [H, W, 3]}'


class PayloadError(ValueError):
    """A client mistake in a request; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ActRequest:
    """One validated `/act` request."""

    image: np.ndarray  # (H, W, 3) uint8, C-contiguous
    instruction: str  # stripped, non-empty
    unnorm_key: str | None  # None = the model's only dataset


def max_body_bytes(max_image_bytes: int) -> int:
    """Largest body worth reading: the base64 of the largest image plus room for the JSON around it."""
    return math.ceil(max_image_bytes / 3) * 4 + 64 * 1024


def parse_body(body: bytes) -> dict:
    """Bytes → the request object (400 when it is not a JSON object)."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise PayloadError(400, f"request body is not valid JSON ({err}); send a JSON object") from None
    if isinstance(obj, dict) and isinstance(obj.get("encoded"), str):  # OpenVLA's deploy client double-encodes
        return parse_body(obj["encoded"].encode())
    if not isinstance(obj, dict):
        raise PayloadError(
            400, f"request body must be a JSON object with 'image' and 'instruction', got {type(obj).__name__}"
        )
    return obj


def _shape(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise PayloadError(422, f"'image.shape' must be a list of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise PayloadError(422, f"'image.shape' has a negative dimension: {value}")
    return tuple(value)


def decode_image(value: object, max_image_bytes: int) -> np.ndarray:
    """A json-numpy object → a validated (H, W, 3) uint8 array."""
    if isinstance(value, list):
        raise PayloadError(422, f"'image' is a plain JSON list; send {IMAGE_HINT} (json_numpy.dumps does this)")
    if not isinstance(value, dict) or not {"__numpy__", "dtype", "shape"} <= value.keys():
        raise PayloadError(422, f"'image' must be {IMAGE_HINT}; got {type(value).__name__}")
    data, dtype_descr = value["__numpy__"], value["dtype"]
    if not isinstance(data, str) or not isinstance(dtype_descr, str):
        raise PayloadError(422, "'image.__numpy__' and 'image.dtype' must be strings")
    try:
        dtype = np.lib.format.descr_to_dtype(dtype_descr)
    except (TypeError, ValueError, SyntaxError) as err:
        raise PayloadError(422, f"'image.dtype' {dtype_descr!r} is not a numpy dtype ({err})") from None
    if dtype != np.uint8:
        raise PayloadError(
            422, f"image dtype must be uint8 (0-255 RGB), got {dtype}; convert with image.astype(np.uint8)"
        )
    shape = _shape(value["shape"])
    if len(shape) != 3 or shape[2] != 3:
        raise PayloadError(422, f"image must have shape (H, W, 3) (one RGB image), got shape {list(shape)}")
    n_bytes = math.prod(shape)
    if n_bytes == 0:
        raise PayloadError(422, f"image is empty (shape {list(shape)}); H and W must be at least 1")
    if n_bytes > max_image_bytes:
        raise PayloadError(
            413, f"image of shape {list(shape)} has {n_bytes} bytes, more than the limit of {max_image_bytes}"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise PayloadError(422, f"'image.__numpy__' is not valid base64 ({err})") from None
    if len(raw) != n_bytes:
        raise PayloadError(422, f"image data has {len(raw)} bytes but shape {list(shape)} needs {n_bytes}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def validate_request(
    obj: dict,
    *,
    unnorm_keys: Sequence[str],
    max_image_bytes: int,
    max_instruction_chars: int,
) -> ActRequest:
    """Check every field of a parsed body; ``unnorm_keys`` are the datasets the model can unnormalize for."""
    if "image" not in obj:
        raise PayloadError(422, f"missing field 'image': {IMAGE_HINT}")
    instruction = obj.get("instruction")
    if instruction is None:
        raise PayloadError(422, "missing field 'instruction': the task in words, e.g. 'pick up the black bowl'")
    if not isinstance(instruction, str):
        raise PayloadError(422, f"'instruction' must be a string, got {type(instruction).__name__}")
    instruction = instruction.strip()
    if not instruction:
        raise PayloadError(422, "'instruction' is empty; say what the robot should do")
    if len(instruction) > max_instruction_chars:
        raise PayloadError(422, f"'instruction' has {len(instruction)} characters, more than {max_instruction_chars}")
    unnorm_key = obj.get("unnorm_key")
    if unnorm_key is not None and not isinstance(unnorm_key, str):
        raise PayloadError(422, f"'unnorm_key' must be a string, got {type(unnorm_key).__name__}")
    if unnorm_key is not None and unnorm_key not in unnorm_keys:
        known = ", ".join(unnorm_keys) or "none (this model has no dataset statistics)"
        raise PayloadError(422, f"unknown unnorm_key {unnorm_key!r}; this model knows: {known}")
    if unnorm_key is None and len(unnorm_keys) > 1:
        raise PayloadError(
            422, f"this model was trained on several datasets: pass 'unnorm_key', one of {', '.join(unnorm_keys)}"
        )
    image = decode_image(obj["image"], max_image_bytes)
    return ActRequest(image=image, instruction=instruction, unnorm_key=unnorm_key)
