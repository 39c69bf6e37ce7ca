"""``OpenVLAConfig``: the one configuration of the VLA, for training and for the Hugging Face format alike.

The keys are those of the official ``openvla/openvla-7b`` ``config.json`` (DESIGN §10), so an official directory
loads into our model and our exports load with the official remote code. Keys that only we use are optional and
default to OpenVLA's behaviour: ``timm_model_kwargs`` (dimension overrides that make tiny ViTs of the same timm
family), ``space_token_id`` (the SentencePiece "▁" that ``predict_action`` appends), ``action_head``,
``action_chunk``, ``parallel_decoding``, ``action_dim``, ``use_proprio``, ``proprio_dim``, ``l1_head_blocks``,
``action_normalization``, ``num_images_in_input``, ``camera_roles`` and ``use_film``.

Action chunks and parallel decoding (OpenVLA-OFT, as options of the same model): ``action_chunk`` K actions of
``action_dim`` D are predicted per query. ``parallel_decoding`` appends K·D learned action slots after the prompt,
attended causally to the prompt and bidirectionally among themselves, and predicts them all in one forward;
``action_head`` "tokens" reads the slots through the LM head (discrete bins, as OpenVLA), "l1" through a small
MLP-ResNet regressing continuous normalized actions (trained with an L1 loss; needs parallel decoding).
``use_proprio`` adds one token, projected from the normalized proprioceptive state, after the image patches.

When ``timm_model_ids`` / ``image_sizes`` / ``timm_override_act_layers`` are absent they are derived from
``vision_backbone_id`` as OpenVLA does (the table below holds the ids we know).
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

# vision_backbone_id → (timm ids, image size). Facts about Prismatic/OpenVLA backbones.
VISION_BACKBONES: dict[str, tuple[list[str], int]] = {
    "dinosiglip-vit-so-224px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"], 224),
    "dinosiglip-vit-so-384px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_384"], 384),
    "dinoclip-vit-l-336px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_large_patch14_clip_336.openai"], 336),
    "dinov2-vit-l": (["vit_large_patch14_reg4_dinov2.lvd142m"], 224),
    "siglip-vit-so400m": (["vit_so400m_patch14_siglip_224"], 224),
    "clip-vit-l": (["vit_large_patch14_clip_224.openai"], 224),
}

# "▁" (SentencePiece word boundary) ids: predict_action appends it when the prompt does not end with it.
SPACE_TOKEN_IDS = {"llama2": 29871, "mistral": 28705}

ACTION_HEADS = ("tokens", "l1")
DEFAULT_CAMERA_ORDER = ("primary", "wrist", "secondary")  # camera roles when a config names none


def default_space_token_id(llm_backbone_id: str) -> int:
    """The "▁" id of the tokenizer family named by ``llm_backbone_id`` (Llama-2 unless it says Mistral)."""
    return SPACE_TOKEN_IDS["mistral"] if "mistral" in llm_backbone_id.lower() else SPACE_TOKEN_IDS["llama2"]


class OpenVLAConfig(PretrainedConfig):
    """Configuration of ``OpenVLAForActionPrediction`` (official keys first, then ours)."""

    model_type = "openvla"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    # --- official keys --------------------------------------------------------------------------------------
    vision_backbone_id: str = "dinosiglip-vit-so-224px"  # Prismatic name of the (fused) vision backbone
    llm_backbone_id: str = "llama2-7b-pure"  # Prismatic name of the LLM; "-pure" = the plain "In: … Out:" prompt
    arch_specifier: str = "no-align+fused-gelu-mlp"  # projector type ("…gelu-mlp" = 2 layers, "fused-…" = 3)
    use_fused_vision_backbone: bool | None = None  # two ViTs concatenated on channels; None → from the timm ids
    image_resize_strategy: str = "resize-naive"  # "resize-naive" | "resize-crop" | "letterbox"
    text_config: dict | PretrainedConfig | None = None  # the LLM's transformers config (Llama for OpenVLA)
    hf_llm_id: str | None = "meta-llama/Llama-2-7b-hf"  # informative only: we never download it
    llm_max_length: int = 2048  # tokenizer/collator truncation length
    pad_token_id: int = 32000  # <PAD>, appended after the 32,000 SentencePiece pieces
    pad_to_multiple_of: int = 64  # embedding rows padded to a multiple of this (32001 → 32064)
    output_projector_states: bool = False  # forward() also returns the projected patch features
    n_action_bins: int = 256  # uniform bins of the action tokenizer
    norm_stats: dict | None = None  # {dataset: {"action": {...}, "proprio": {...}, ...}} (DESIGN §5)
    timm_model_ids: list | None = None  # one timm id per backbone (DINOv2 first); None → from vision_backbone_id
    timm_override_act_layers: list | None = None  # per backbone: None or a timm act_layer name
    image_sizes: list | None = None  # per backbone input size in pixels; None → from vision_backbone_id
    # --- our optional keys -----------------------------------------------------------------------------------
    timm_model_kwargs: list | None = None  # per backbone: extra timm.create_model kwargs (tiny dims); None = none
    space_token_id: int | None = None  # "▁" id appended by predict_action; None → 29871 (Llama-2) / 28705 (Mistral)
    action_head: str = "tokens"  # "tokens" = OpenVLA's discrete action tokens; "l1" = continuous MLP-ResNet (OFT)
    action_chunk: int = 1  # K actions predicted per query (1 = OpenVLA)
    parallel_decoding: bool = False  # K·D action slots predicted in one forward (OFT); False = token by token
    action_dim: int = 7  # D: action dimensions per step (slots and the L1 head are sized by it)
    use_proprio: bool = False  # one extra token projected from the normalized proprio state (OFT)
    proprio_dim: int = 8  # state dimensions fed to the proprio projector (LIBERO: ee pose 6 + gripper 2)
    l1_head_blocks: int = 2  # residual blocks of the L1 head's MLP-ResNet
    action_normalization: str = "bounds_q99"  # how norm_stats were applied to actions (unnormalize uses the same)
    # What the inference transform needs (DESIGN §14), so a model directory alone determines it: the training
    # frames were resized with this method, and random-crop augmented when image_augmentation (inference then takes
    # the centre crop). Official checkpoints carry neither key: lanczos3, no crop (their LIBERO fine-tunes were
    # trained with augmentation: eval_libero.center_crop applies the crop for them, as OpenVLA's evaluation does).
    image_resize_method: str = "lanczos3"
    image_augmentation: bool = False
    # Several cameras (OFT, DESIGN §13): N images per sample, each through the same backbone(s); ``pixel_values``
    # stack them on channels ([B, 3·n·N, S, S]) and their patches are concatenated on the sequence in this order.
    # ``camera_roles`` names them (the data pipeline's roles: primary = third person first, then wrist / secondary)
    # so a server knows which frame is which; None = the first N of ("primary", "wrist", "secondary").
    num_images_in_input: int = 1
    camera_roles: list | None = None
    # FiLM (OFT+): every ViT block modulates its residual stream with the mean of the prompt's token embeddings.
    use_film: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.text_config is None:
            self.text_config = {"model_type": "llama", "vocab_size": 32064, "pad_token_id": 32000}
        super().__post_init__(**kwargs)
        known = VISION_BACKBONES.get(self.vision_backbone_id)
        if self.timm_model_ids is None:
            if known is None:
                raise ValueError(
                    f"OpenVLAConfig: vision_backbone_id {self.vision_backbone_id!r} is not one of "
                    f"{sorted(VISION_BACKBONES)}; give timm_model_ids and image_sizes explicitly"
                )
            self.timm_model_ids = list(known[0])
        n = len(self.timm_model_ids)
        if self.image_sizes is None:
            if known is None:
                raise ValueError(f"OpenVLAConfig: image_sizes is required for {self.vision_backbone_id!r}")
            self.image_sizes = [known[1]] * n
        if self.timm_override_act_layers is None:
            self.timm_override_act_layers = [None] * n
        if self.use_fused_vision_backbone is None:
            self.use_fused_vision_backbone = n == 2
        if self.space_token_id is None:
            self.space_token_id = default_space_token_id(self.llm_backbone_id)
        for key in ("image_sizes", "timm_override_act_layers") + (
            ("timm_model_kwargs",) if self.timm_model_kwargs else ()
        ):
            if len(getattr(self, key)) != n:
                raise ValueError(
                    f"OpenVLAConfig.{key}: expected {n} entries (one per timm_model_ids), got {getattr(self, key)!r}"
                )
        if self.camera_roles is None:
            self.camera_roles = list(DEFAULT_CAMERA_ORDER[: max(1, int(self.num_images_in_input))])
        if self.use_fused_vision_backbone != (n == 2):
            raise ValueError(
                f"OpenVLAConfig.use_fused_vision_backbone={self.use_fused_vision_backbone} but {n} timm_model_ids given"
            )
        if len(set(self.image_sizes)) != 1:
            raise ValueError(f"OpenVLAConfig.image_sizes: backbones must share one input size, got {self.image_sizes}")
        self.validate_action_options()

    def validate_action_options(self) -> None:
        """Raise ``ValueError`` for an impossible combination of the action options (head, chunk, parallel)."""
        if self.action_head not in ACTION_HEADS:
            raise ValueError(f"OpenVLAConfig.action_head: expected one of {ACTION_HEADS}, got {self.action_head!r}")
        if self.action_head == "l1" and not self.parallel_decoding:
            raise ValueError(
                "OpenVLAConfig.action_head='l1' needs parallel_decoding=True (the head reads action slots)"
            )
        for key in ("action_chunk", "action_dim", "proprio_dim", "num_images_in_input"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"OpenVLAConfig.{key}: expected an integer ≥ 1, got {getattr(self, key)!r}")
        roles = list(self.camera_roles or [])
        if len(roles) != int(self.num_images_in_input) or len(set(roles)) != len(roles):
            raise ValueError(
                f"OpenVLAConfig.camera_roles: expected {self.num_images_in_input} distinct roles "
                f"(num_images_in_input), got {self.camera_roles!r}"
            )

    def set_cameras(self, roles: list[str]) -> None:
        """Feed the model these camera roles, in this order (``num_images_in_input`` follows)."""
        self.camera_roles = [str(r) for r in roles]
        self.num_images_in_input = len(self.camera_roles)
        self.validate_action_options()

    @property
    def num_action_slots(self) -> int:
        """K·D: the action positions after the prompt (tokens decoded one by one, or parallel slots)."""
        return int(self.action_chunk) * int(self.action_dim)

    @property
    def base_vocab_size(self) -> int:
        """Unpadded vocabulary size V (32000): action token ids are V−n_bins … V−1 (computed as OpenVLA does)."""
        return self.text_config.vocab_size - self.pad_to_multiple_of

    @property
    def image_size(self) -> int:
        return int(self.image_sizes[0])
