"""``PrismaticProcessor``: the image processor and the text tokenizer behind one call, as OpenVLA users know it.

    processor = AutoProcessor.from_pretrained("models/openvla-embedded-hf")
    inputs = processor(prompt, pil_image)          # input_ids, attention_mask, pixel_values
    action = model.predict_action(**inputs, unnorm_key="libero_embedded", do_sample=False)

Several prompts with as many images give a right-padded batch (``padding=True``), which ``predict_action``
accepts. The class name and ``processor_config.json`` match the official checkpoint, so an official directory
resolves to this class without ``trust_remote_code``.
"""

from __future__ import annotations

from typing import Any

from transformers import BatchFeature, ProcessorMixin


class PrismaticProcessor(ProcessorMixin):
    """``PrismaticImageProcessor`` + Llama tokenizer; ``__call__(text, images)`` as the official processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Any = None,
        padding: bool | str = False,
        truncation: bool | None = None,
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Prompt(s) and PIL image(s) (or uint8 H×W×3 arrays) → ``input_ids``, ``attention_mask``, ``pixel_values``.

        ``pixel_values`` is [B, 3·n_backbones, S, S] (DINOv2 first); the text is tokenized with BOS and no EOS.
        Several-camera models (``num_images_in_input`` N): one prompt with a list of its N camera images (in the
        model's ``camera_roles`` order), or prompts with a list of such lists → [B, 3·n·N, S, S].
        """
        if text is None or images is None:
            raise ValueError("PrismaticProcessor needs both a prompt (text=...) and an image (images=...)")
        n_text = 1 if isinstance(text, str) else len(text)
        if n_text > 1 and not padding:
            padding = True  # prompts of different lengths can only be batched padded
        if isinstance(text, str) and isinstance(images, list | tuple) and len(images) > 1:
            images = [list(images)]  # one prompt, several cameras
        pixel_values = self.image_processor(images, return_tensors=return_tensors)["pixel_values"]
        text_inputs = self.tokenizer(
            text, return_tensors=return_tensors, padding=padding, truncation=truncation, max_length=max_length
        )
        n_images = len(pixel_values)
        if n_images != n_text:
            raise ValueError(
                f"PrismaticProcessor: {n_text} prompt(s) but {n_images} image(s); give one image per prompt"
            )
        return BatchFeature(data={**text_inputs, "pixel_values": pixel_values})

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
