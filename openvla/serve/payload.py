"""Decode and validate one `/act` request body without trusting anything in it.

The wire format is OpenVLA's deploy format: a JSON object whose ``image`` is a json-numpy array
(``{"__numpy__": base64, "dtype": "|u1", "shape": [H, W, 3]}``), ``instruction`` a string and ``unnorm_key`` an
optional string. The official client may also wrap the whole object as a JSON string under ``"encoded"``.

Optional fields for OpenVLA-OFT models (an OpenVLA client sends none of them and is served as before):

* ``proprio``: the raw robot state, a JSON list of numbers or a 1-D json-numpy array. Required (422 naming it) when
  the model was trained with ``use_proprio``, and then of the model's ``proprio_dim`` length; ignored by a model
  without proprioception, so a client may always send it.
* ``wrist_image`` (a json-numpy image like ``image``) or ``images`` ({camera role: json-numpy image}): the other
  cameras of a several-camera model (its ``camera_roles``, e.g. primary + wrist). ``image`` is the model's first
  camera. A camera the model reads but the request lacks is a 422 naming it; frames of cameras it does not read are
  accepted and dropped, so one client can serve one- and two-camera models.
* ``session`` (string) and ``reset`` (bool): which client episode a request belongs to, for the executing modes
  ``serve.execution`` = open_loop / ensemble (``sessions.py``); ``reset: true`` starts a new episode. Accepted and
  ignored in ``chunk`` mode.

Every client mistake becomes a ``PayloadError`` carrying the HTTP status (400 unparsable, 413 too large, 422
semantically wrong, including a key outside ``ACCEPTED_KEYS``) and a message that says what was expected, so the server
never answers 500 for one. The declared dtype and shape are checked *before* any base64 is decoded, so a huge or hostile
body costs little.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openvla.policy.sessions import DEFAULT_SESSION

# Every key a request may carry; any other is refused (a typo such as 'unorm_key' would otherwise go unnoticed).
ACCEPTED_KEYS = ("image", "wrist_image", "images", "instruction", "unnorm_key", "proprio", "session", "reset")
CAMERA_ROLES = ("primary", "secondary", "wrist")  # the keys 'images' may hold (the data pipeline's roles)
MAX_SESSION_CHARS = 256
MAX_PROPRIO_DIM = 4096  # far above any robot state; bounds the work spent on a hostile 'proprio'
PROPRIO_HINT = "a list of numbers (the raw robot state), or a 1-D json-numpy float array"
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

    image: np.ndarray  # (H, W, 3) uint8, C-contiguous: the model's first camera
    instruction: str  # stripped, non-empty
    unnorm_key: str | None  # None = the model's only dataset
    proprio: np.ndarray | None = None  # (P,) float64 raw robot state; None when absent or the model takes none
    session: str = DEFAULT_SESSION  # client episode id (open_loop / ensemble execution)
    reset: bool = False  # start a new episode for this session
    images: tuple[np.ndarray, ...] = ()  # every camera the model reads, in its order (image first)

    @property
    def model_images(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """What the policy takes for this sample: the frame (one camera) or the frames in camera order."""
        return self.image if len(self.images) <= 1 else self.images


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


def decode_proprio(value: object, proprio_dim: int | None) -> np.ndarray:
    """A JSON list or json-numpy array → a finite (P,) float64 array (P = ``proprio_dim`` when that is given)."""
    if isinstance(value, dict):
        if not {"__numpy__", "dtype", "shape"} <= value.keys():
            raise PayloadError(422, f"'proprio' must be {PROPRIO_HINT}; got an object without '__numpy__'")
        data, descr, shape = value["__numpy__"], value["dtype"], value["shape"]
        if not isinstance(data, str) or not isinstance(descr, str):
            raise PayloadError(422, "'proprio.__numpy__' and 'proprio.dtype' must be strings")
        try:
            dtype = np.lib.format.descr_to_dtype(descr)
        except (TypeError, ValueError, SyntaxError) as err:
            raise PayloadError(422, f"'proprio.dtype' {descr!r} is not a numpy dtype ({err})") from None
        if dtype.kind not in "fiu":
            raise PayloadError(422, f"'proprio' must hold real numbers, got dtype {dtype}")
        if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 0):
            raise PayloadError(422, f"'proprio' must be 1-D (one state vector), got shape {shape!r}")
        if shape[0] > MAX_PROPRIO_DIM:
            raise PayloadError(422, f"'proprio' has {shape[0]} values, more than {MAX_PROPRIO_DIM}")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise PayloadError(422, f"'proprio.__numpy__' is not valid base64 ({err})") from None
        needed = shape[0] * dtype.itemsize
        if len(raw) != needed:
            raise PayloadError(422, f"'proprio' data has {len(raw)} bytes but shape {shape} of {dtype} needs {needed}")
        values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    elif isinstance(value, list):
        if len(value) > MAX_PROPRIO_DIM:
            raise PayloadError(422, f"'proprio' has {len(value)} values, more than {MAX_PROPRIO_DIM}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise PayloadError(422, f"'proprio' must be {PROPRIO_HINT}; it holds something other than numbers")
        values = np.asarray(value, dtype=np.float64)
    else:
        raise PayloadError(422, f"'proprio' must be {PROPRIO_HINT}; got {type(value).__name__}")
    if not np.isfinite(values).all():
        raise PayloadError(422, "'proprio' holds NaN or infinite values")
    if proprio_dim is not None and values.shape[0] != proprio_dim:
        raise PayloadError(
            422,
            f"'proprio' has {values.shape[0]} values; this model expects proprio_dim={proprio_dim} (its robot state)",
        )
    return values


def validate_request(
    obj: dict,
    *,
    unnorm_keys: Sequence[str],
    max_image_bytes: int,
    max_instruction_chars: int,
    proprio_dim: int | None = None,
    cameras: Sequence[str] = ("primary",),
) -> ActRequest:
    """Check every field of a parsed body; ``unnorm_keys`` are the datasets the model can unnormalize for;
    ``cameras`` the model's camera roles in order (``image`` is the first, the rest come from ``wrist_image`` /
    ``images``).

    ``proprio_dim`` is the state size of a model with ``use_proprio`` (then ``proprio`` is required), None for a model
    without proprioception (then a ``proprio`` sent anyway is checked for form and dropped).
    """
    unknown = sorted(str(k) for k in obj if k not in ACCEPTED_KEYS)
    if unknown:
        raise PayloadError(
            422, f"unknown field(s) {', '.join(map(repr, unknown))}; /act accepts: {', '.join(ACCEPTED_KEYS)}"
        )
    if "image" not in obj and not obj.get("images"):
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
    session = obj.get("session")
    if session is None:  # absent or null
        session = DEFAULT_SESSION
    if not isinstance(session, str):
        raise PayloadError(422, f"'session' must be a string (a client episode id), got {type(session).__name__}")
    if not session:
        raise PayloadError(422, "'session' is empty; omit it or send a client episode id")
    if len(session) > MAX_SESSION_CHARS:
        raise PayloadError(422, f"'session' has {len(session)} characters, more than {MAX_SESSION_CHARS}")
    reset = obj.get("reset")
    reset = False if reset is None else reset
    if not isinstance(reset, bool):
        raise PayloadError(422, f"'reset' must be true or false, got {type(reset).__name__}")
    proprio = obj.get("proprio")
    if proprio is None and proprio_dim is not None:
        raise PayloadError(
            422,
            f"missing field 'proprio': this model uses proprioception (use_proprio); send the raw robot state, "
            f"{proprio_dim} numbers",
        )
    if proprio is not None:
        proprio = decode_proprio(proprio, proprio_dim)
        if proprio_dim is None:
            proprio = None  # the model takes no state: accepted, not used
    frames = camera_images(obj, cameras, max_image_bytes)
    return ActRequest(
        image=frames[0], instruction=instruction, unnorm_key=unnorm_key, proprio=proprio, session=session,
        reset=reset, images=frames,
    )  # fmt: skip


def camera_images(obj: dict, cameras: Sequence[str], max_image_bytes: int) -> tuple[np.ndarray, ...]:
    """The decoded frames of ``cameras`` (in order) from ``image`` / ``wrist_image`` / ``images``."""
    named = obj.get("images")
    if named is None:
        named = {}
    if not isinstance(named, dict):
        raise PayloadError(422, f"'images' must be an object {{camera role: image}}, got {type(named).__name__}")
    unknown = sorted(str(k) for k in named if k not in CAMERA_ROLES)
    if unknown:
        raise PayloadError(
            422,
            f"'images' has unknown camera role(s) {', '.join(map(repr, unknown))}; roles: {', '.join(CAMERA_ROLES)}",
        )
    sources: dict[str, tuple[str, object]] = {role: (f"images.{role}", value) for role, value in named.items()}
    if "image" in obj:
        sources.setdefault(cameras[0], ("image", obj["image"]))
    if "wrist_image" in obj:
        sources.setdefault("wrist", ("wrist_image", obj["wrist_image"]))
    frames = []
    for role in cameras:
        if role not in sources:
            hint = (
                "'image'" if role == cameras[0] else ("'wrist_image' or " if role == "wrist" else "") + f"images.{role}"
            )
            raise PayloadError(
                422, f"missing the {role!r} camera: this model reads cameras {list(cameras)}; send {hint}: {IMAGE_HINT}"
            )
        field_name, value = sources[role]
        try:
            frames.append(decode_image(value, max_image_bytes))
        except PayloadError as err:
            raise PayloadError(err.status, f"{field_name}: {err.message}") from None
    return tuple(frames)
