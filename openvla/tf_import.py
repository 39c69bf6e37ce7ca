"""The one guarded place that imports TensorFlow (and tensorflow-datasets, which imports it).

Two known crashes decide the order here:
* TensorFlow loaded before triton segfaults the process later, when torch lazily loads triton (first optimizer
  step, timm/peft import). Importing ``torch`` and ``torch._dynamo`` first loads triton's dependencies first.
* TensorFlow loads its own LLVM into the global symbol namespace, and Mesa's software renderer (LIBERO/MuJoCo)
  then segfaults in ``eglCreateContext``. Blocking ``tensorflow.python.pywrap_dlopen_global_flags`` makes
  TensorFlow load its libraries privately (RTLD_LOCAL).

Every module in ``openvla`` that needs TensorFlow calls ``import_tensorflow()`` / ``import_tfds()``; nothing
imports ``tensorflow`` directly. TensorFlow is kept off any GPU: torch owns the accelerators.
"""

from __future__ import annotations

import contextlib
import os
import sys
from types import ModuleType

_TF: ModuleType | None = None


def import_tensorflow() -> ModuleType:
    """Import TensorFlow safely (see the module docstring) and return the module."""
    global _TF
    if _TF is not None:
        return _TF
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Order matters: torch and its compiler stack before TensorFlow.
    import torch._dynamo  # noqa: F401  (also imports torch)

    if "tensorflow" not in sys.modules:
        sys.modules["tensorflow.python.pywrap_dlopen_global_flags"] = None  # type: ignore[assignment]
    import tensorflow as tf

    # RuntimeError: devices already initialised by an earlier import; nothing to hide then.
    with contextlib.suppress(RuntimeError, ValueError):
        tf.config.set_visible_devices([], "GPU")
    _TF = tf
    return tf


def import_tfds() -> ModuleType:
    """Import tensorflow-datasets after TensorFlow has been imported safely."""
    import_tensorflow()
    import tensorflow_datasets as tfds

    return tfds


def limit_tensorflow_threads(threads: int = 1) -> bool:
    """Give TensorFlow's op thread pools ``threads`` threads, if its runtime has not started yet; True when applied.

    An inference process uses TensorFlow for one small op per camera frame (the training resize) between torch
    calls. With TensorFlow's default pools (one thread per core) its idle threads spin while torch computes, and
    on a 2-core machine a 3 ms resize followed by a 0.4 ms processor call took 130 ms (measured 2026-12-05, loaded
    machine); with one thread, 12 ms. The resize gives the same pixels with any thread count. Training on the
    CPU calls it too (``openvla.train.data.quiet_tensorflow_pools_for_cpu_training``).
    """
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime already started (something ran a TensorFlow op first): leave it
        return False
    return True
