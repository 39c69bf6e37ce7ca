"""What happens between the simulator and the policy in OpenVLA's LIBERO protocol (DESIGN §11).

Image: LIBERO renders upside down, so the agentview frame is rotated 180°; it then goes through a JPEG round-trip
(the training images were stored as JPEG in RLDS, quality 95 as ``tf.image.encode_jpeg`` and tfds write them), is
resized with the training pipeline's own ``resize_image``, and — when the model was trained with random-crop
augmentation — centre-cropped to 90% of its area and resized back (``center_crop_resize``, the deterministic
counterpart of the training crop). The result equals the training pipeline's frame for the same rendered image.

Gripper: the policy speaks the training convention (gripper in [0, 1], 1 = open); LIBERO wants −1 open / +1 close.
[0, 1] → [−1, 1], binarize with sign, flip the sign.
"""

from __future__ import annotations

import numpy as np

from openvla.tf_import import import_tensorflow


def rotate_180(image: np.ndarray) -> np.ndarray:
    """Undo LIBERO's upside-down rendering (same as the converter's rotation)."""
    return np.ascontiguousarray(np.asarray(image)[::-1, ::-1])


def jpeg_roundtrip(image: np.ndarray) -> np.ndarray:
    """Encode to JPEG and decode (TensorFlow's codec and defaults, as the training images went through)."""
    tf = import_tensorflow()
    encoded = tf.image.encode_jpeg(np.ascontiguousarray(image, dtype=np.uint8))
    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


def prepare_image(raw: np.ndarray, size: int, center_crop: bool) -> np.ndarray:
    """LIBERO agentview frame (uint8 H×W×3, upside down) → the policy's uint8 size×size×3 input."""
    from openvla.data.image_ops import center_crop_resize, resize_image

    image = resize_image(jpeg_roundtrip(rotate_180(raw)), size)
    if center_crop:
        image = center_crop_resize(image).numpy()
    return image


def libero_gripper(actions: np.ndarray) -> np.ndarray:
    """Policy actions [..., 7] (gripper in [0, 1], 1 = open) → LIBERO actions (gripper −1 open / +1 close)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    g = 2.0 * out[..., -1] - 1.0  # [0, 1] → [−1, 1]
    out[..., -1] = -np.sign(g)  # binarize, then LIBERO's sign (+1 = close)
    return out
