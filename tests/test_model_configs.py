"""Named model configurations, and openvla-7b built on the meta device with the official size and names."""

from __future__ import annotations

import pytest
import torch

from openvla.model.configs import get_model_config, image_size_of, model_config_names
from openvla.model.configuration import OpenVLAConfig
from openvla.model.vla import build_vla

OFFICIAL_7B_PARAMETERS = 7_541_237_184  # openvla/openvla-7b, every tensor of model.safetensors


def test_registry_names_and_did_you_mean():
    assert model_config_names() == ["tiny", "small", "openvla-7b"]
    with pytest.raises(ValueError, match="did you mean 'tiny'"):
        get_model_config("tinny")
    with pytest.raises(ValueError, match="known: tiny, small, openvla-7b"):
        get_model_config("gpt-5")


def test_openvla_7b_config_has_the_official_keys_and_values():
    config = get_model_config("openvla-7b")
    d = config.to_dict()
    assert d["model_type"] == "openvla"
    assert d["vision_backbone_id"] == "dinosiglip-vit-so-224px" and d["llm_backbone_id"] == "llama2-7b-pure"
    assert d["arch_specifier"] == "no-align+fused-gelu-mlp" and d["use_fused_vision_backbone"] is True
    assert d["timm_model_ids"] == ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
    assert d["timm_override_act_layers"] == [None, None] and d["image_sizes"] == [224, 224]
    assert d["image_resize_strategy"] == "resize-naive" and d["n_action_bins"] == 256
    assert (d["pad_token_id"], d["pad_to_multiple_of"], d["llm_max_length"]) == (32000, 64, 2048)
    text = d["text_config"]
    assert (text["vocab_size"], text["hidden_size"], text["num_hidden_layers"]) == (32064, 4096, 32)
    assert (text["intermediate_size"], text["num_attention_heads"], text["pad_token_id"]) == (11008, 32, 32000)
    assert config.space_token_id == 29871 and config.base_vocab_size == 32000
    assert image_size_of(config) == 224


def test_tiny_uses_mistral_space_id_and_small_images():
    config = get_model_config("tiny")
    assert config.space_token_id == 28705 and image_size_of(config) == 112
    assert config.timm_model_ids == get_model_config("openvla-7b").timm_model_ids  # same timm families


def test_official_style_config_derives_backbone_fields():
    """A config.json as the hub ships it (timm ids etc. present or not) resolves the same way."""
    config = OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-so-224px", text_config={"model_type": "llama", "vocab_size": 32064}
    )
    assert config.use_fused_vision_backbone and config.image_sizes == [224, 224]
    again = OpenVLAConfig(**config.to_dict())
    assert again.to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="timm_model_ids"):
        OpenVLAConfig(vision_backbone_id="my-own-vit")


def test_openvla_7b_builds_on_meta_device_with_official_size_and_names():
    with torch.device("meta"):
        model = build_vla(get_model_config("openvla-7b"))
    params = dict(model.named_parameters())
    assert all(p.is_meta for p in params.values())  # nothing allocated
    assert sum(p.numel() for p in params.values()) == OFFICIAL_7B_PARAMETERS
    expected = {
        "vision_backbone.featurizer.blocks.0.ls1.scale_factor": (1024,),
        "vision_backbone.featurizer.reg_token": (1, 4, 1024),
        "vision_backbone.fused_featurizer.blocks.26.mlp.fc2.weight": (1152, 4304),
        "vision_backbone.fused_featurizer.attn_pool.latent": (1, 1, 1152),
        "projector.fc1.weight": (8704, 2176),
        "projector.fc2.weight": (4096, 8704),
        "projector.fc3.bias": (4096,),
        "language_model.model.embed_tokens.weight": (32064, 4096),
        "language_model.model.layers.0.self_attn.q_proj.weight": (4096, 4096),
        "language_model.model.layers.31.mlp.down_proj.weight": (4096, 11008),
        "language_model.lm_head.weight": (32064, 4096),
    }
    for name, shape in expected.items():
        assert tuple(params[name].shape) == shape, name
    assert not any(name.endswith(".gamma") for name in params)
    assert model.vision_backbone.num_patches == 256 and model.vision_backbone.embed_dim == 2176
