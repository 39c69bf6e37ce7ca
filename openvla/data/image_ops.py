"""Image decoding, resizing and augmentation — the exact ops training uses (DESIGN §6).

``resize_image`` is the numpy entry point evaluation and serving call, so a robot camera frame is resized exactly
as the training frames were (TF lanczos3 with antialiasing, rounded and clipped to uint8).
"""

from __future__ import annotations

import numpy as np

from openvla.tf_import import import_tensorflow

RESIZE_METHOD = "lanczos3"  # the training resize (antialiased); exports record it as config ``image_resize_method``

# OpenVLA's augmentation (DESIGN §6), applied in this order with one seed shared by every camera of a frame.
CROP_SCALE = 0.9  # random resized crop keeps 90% of the area ...
CROP_RATIO = 1.0  # ... with the image's aspect ratio
BRIGHTNESS_DELTA = 0.2
CONTRAST_RANGE = (0.8, 1.2)
SATURATION_RANGE = (0.8, 1.2)
HUE_DELTA = 0.05


def resize_tf(image, size: int):
    """uint8 [..., H, W, 3] → uint8 [..., size, size, 3] (lanczos3, antialias, round, clip)."""
    tf = import_tensorflow()
    resized = tf.image.resize(tf.cast(image, tf.float32), (size, size), method=RESIZE_METHOD, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 H×W×3 → uint8 size×size×3, the exact resize of the training pipeline (eval calls this)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"resize_image: expected a uint8 H×W×3 image, got {image.dtype} {image.shape}")
    if image.shape[0] == size and image.shape[1] == size:
        return image.copy()  # lanczos at scale 1 is the identity up to rounding; skip the work
    return resize_tf(image, size).numpy()


def decode_and_resize(encoded, size: int):
    """One encoded JPEG/PNG string → uint8 [size, size, 3]; an empty string (missing camera) → zeros."""
    tf = import_tensorflow()

    def decode():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return resize_tf(image, size)

    return tf.cond(tf.strings.length(encoded) > 0, decode, lambda: tf.zeros([size, size, 3], tf.uint8))


def augment_image(image, seed):
    """uint8 [..., H, W, 3] → augmented uint8, same shape. ``seed`` (int32 [2]) fixes every random choice, so calling
    it with the same seed on each camera (and each window step) of a frame applies the same augmentation."""
    tf = import_tensorflow()
    seed = tf.cast(seed, tf.int32)
    seeds = [seed + tf.constant([i, 0], tf.int32) for i in range(6)]
    x = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    shape = tf.shape(x)
    height, width = shape[-3], shape[-2]
    # Random resized crop: area fraction CROP_SCALE, aspect ratio CROP_RATIO, uniform position, resized back.
    crop_h = tf.minimum(tf.sqrt(CROP_SCALE / CROP_RATIO), 1.0)
    crop_w = tf.minimum(tf.sqrt(CROP_SCALE * CROP_RATIO), 1.0)
    top = tf.random.stateless_uniform([], seeds[0], 0.0, 1.0 - crop_h)
    left = tf.random.stateless_uniform([], seeds[1], 0.0, 1.0 - crop_w)
    box = tf.stack([top, left, top + crop_h, left + crop_w])
    batch = tf.reshape(x, tf.concat([[-1], shape[-3:]], axis=0))
    n = tf.shape(batch)[0]
    batch = tf.image.crop_and_resize(batch, tf.tile(box[None], [n, 1]), tf.range(n), tf.stack([height, width]))
    x = tf.reshape(batch, shape)
    x = tf.image.stateless_random_brightness(x, BRIGHTNESS_DELTA, seeds[2])
    x = tf.image.stateless_random_contrast(x, *CONTRAST_RANGE, seeds[3])
    x = tf.image.stateless_random_saturation(x, *SATURATION_RANGE, seeds[4])
    x = tf.image.stateless_random_hue(x, HUE_DELTA, seeds[5])
    x = tf.clip_by_value(x, 0.0, 1.0)
    return tf.image.convert_image_dtype(x, tf.uint8, saturate=True)


def center_crop_resize(image, scale: float = CROP_SCALE):
    """The deterministic counterpart of the random crop (eval's 90%-area centre crop), uint8 in and out."""
    tf = import_tensorflow()
    x = tf.image.convert_image_dtype(image, tf.float32)
    shape = tf.shape(x)
    side = tf.sqrt(scale)
    offset = (1.0 - side) / 2.0
    box = tf.stack([offset, offset, offset + side, offset + side])[None]
    batch = tf.reshape(x, tf.concat([[-1], shape[-3:]], axis=0))
    n = tf.shape(batch)[0]
    batch = tf.image.crop_and_resize(batch, tf.tile(box, [n, 1]), tf.range(n), tf.stack([shape[-3], shape[-2]]))
    return tf.image.convert_image_dtype(tf.reshape(batch, shape), tf.uint8, saturate=True)
