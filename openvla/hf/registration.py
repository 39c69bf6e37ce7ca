"""Register OpenVLA with transformers' Auto classes, so no ``trust_remote_code`` is ever needed.

After ``register()``: ``AutoConfig`` maps ``model_type: "openvla"`` to ``OpenVLAConfig``;
``AutoModelForImageTextToText`` (and ``AutoModelForCausalLM``, ``AutoModel``) to ``OpenVLAForActionPrediction``;
``AutoImageProcessor`` resolves ``"PrismaticImageProcessor"`` and ``AutoProcessor`` ``"PrismaticProcessor"``, the
names official directories carry. Their ``auto_map`` entries (pointing at hub remote code) are then ignored,
because transformers prefers registered local classes when ``trust_remote_code`` is not given.

``import openvla`` calls this lazily (see ``openvla/hf/hook.py``); calling it again is free.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_registered = False


def _register_image_processor(auto: type, config_class: type, processor_class: type) -> None:
    """``AutoImageProcessor.register`` insists on a ``BaseImageProcessor`` subclass; ours is an
    ``ImageProcessingMixin`` (it has its own ``preprocess``), which loads and saves the same way, so it goes into
    the mapping directly when the public call refuses it."""
    try:
        auto.register(
            config_class,
            image_processor_classes={"pil": processor_class, "torchvision": processor_class},
            exist_ok=True,
        )
    except ValueError:
        from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

        IMAGE_PROCESSOR_MAPPING.register(
            config_class, {"pil": processor_class, "torchvision": processor_class}, exist_ok=True
        )


def register() -> None:
    """Register the OpenVLA config, model, image processor and processor with transformers (idempotent)."""
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
        )

        from openvla.hf.processing import PrismaticProcessor
        from openvla.model.configuration import OpenVLAConfig
        from openvla.model.image_processing import PrismaticImageProcessor
        from openvla.model.vla import OpenVLAForActionPrediction

        AutoConfig.register(OpenVLAConfig.model_type, OpenVLAConfig, exist_ok=True)
        for auto in (AutoModelForImageTextToText, AutoModelForCausalLM, AutoModel):
            auto.register(OpenVLAConfig, OpenVLAForActionPrediction, exist_ok=True)
        _register_image_processor(AutoImageProcessor, OpenVLAConfig, PrismaticImageProcessor)
        AutoProcessor.register(OpenVLAConfig, PrismaticProcessor, exist_ok=True)
        _registered = True
        log.debug("registered OpenVLA with transformers' Auto classes")
