"""The tiny VLA: shapes, the [BOS] + patches + prompt layout, label masking, the loss, vision features, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openvla.model.vision import LayerScale, rename_timm_keys
from openvla.model.vla import IGNORE_INDEX, OpenVLAForActionPrediction
from tests.model_fixtures import tiny_batch, tiny_model

N_PATCHES = 64  # 112 px / 14 px patches = 8 × 8
VISION_DIM = 96 + 96  # DINOv2-style + SigLIP-style widths of the tiny config


@pytest.fixture(scope="module")
def model() -> OpenVLAForActionPrediction:
    return tiny_model()


@pytest.fixture(scope="module")
def batch() -> dict:
    return tiny_batch(3)


def test_shapes_through_the_tiny_model(model, batch):
    pixel_values = batch["pixel_values"]
    assert pixel_values.shape == (3, 6, 112, 112)
    with torch.no_grad():
        features = model.vision_backbone(pixel_values)
        projected = model.projector(features)
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")})
    assert features.shape == (3, N_PATCHES, VISION_DIM)
    assert projected.shape == (3, N_PATCHES, model.config.text_config.hidden_size)
    length = batch["input_ids"].shape[1]
    assert out.logits.shape == (3, length + N_PATCHES, 32064)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert model.language_model.config._attn_implementation == "sdpa"


def test_patches_follow_bos_and_labels_are_masked_position_by_position(model, batch):
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        embeds, mm_mask, mm_labels, patches = model._multimodal_inputs(ids, mask, batch["pixel_values"], labels)
        token_embeds = model.get_input_embeddings()(ids)
    length = ids.shape[1]
    assert embeds.shape[1] == length + N_PATCHES
    for b in range(ids.shape[0]):
        assert ids[b, 0] == 1  # BOS
        torch.testing.assert_close(embeds[b, 0], token_embeds[b, 0], rtol=0, atol=0)
        for p in range(N_PATCHES):
            torch.testing.assert_close(embeds[b, 1 + p], patches[b, p], rtol=0, atol=0)
            assert mm_mask[b, 1 + p] and mm_labels[b, 1 + p] == IGNORE_INDEX
        for t in range(1, length):
            torch.testing.assert_close(embeds[b, N_PATCHES + t], token_embeds[b, t], rtol=0, atol=0)
            assert mm_mask[b, N_PATCHES + t] == mask[b, t]
            assert mm_labels[b, N_PATCHES + t] == labels[b, t]
        assert mm_labels[b, 0] == labels[b, 0] == IGNORE_INDEX


def test_loss_is_causal_lm_cross_entropy_over_the_action_tokens(model, batch):
    with torch.no_grad():
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")})
    labels = batch["labels"]
    mm_labels = torch.cat([labels[:, :1], torch.full((3, N_PATCHES), IGNORE_INDEX), labels[:, 1:]], dim=1)
    manual = F.cross_entropy(
        out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), mm_labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    torch.testing.assert_close(out.loss, manual)
    assert int((mm_labels != IGNORE_INDEX).sum()) == 3 * 8  # 7 action tokens + </s> per sample


def test_features_are_patch_tokens_of_the_second_to_last_block(model, batch):
    vit = model.vision_backbone.featurizer
    x = batch["pixel_values"][:, :3]
    with torch.no_grad():
        h = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        for block in vit.blocks[:-1]:
            h = block(h)
        manual = h[:, vit.num_prefix_tokens :]  # drop CLS + 4 registers, no final norm
        features = model.vision_backbone(batch["pixel_values"])
    assert vit.num_prefix_tokens == 5
    torch.testing.assert_close(features[..., :96], manual)
    # The last block, the final norm and SigLIP's attention pool never influence the features.
    unused = set(model.unused_parameter_names())
    assert "vision_backbone.featurizer.blocks.3.attn.qkv.weight" in unused
    assert "vision_backbone.fused_featurizer.attn_pool.latent" in unused
    assert "vision_backbone.featurizer.blocks.2.attn.qkv.weight" not in unused
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")})
    out.loss.backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    model.zero_grad(set_to_none=True)
    assert no_grad == unused


def test_layerscale_uses_official_names_and_loads_timm_gamma(model):
    names = [n for n, _ in model.vision_backbone.featurizer.named_parameters()]
    assert "blocks.0.ls1.scale_factor" in names and not any(n.endswith("gamma") for n in names)
    assert isinstance(model.vision_backbone.featurizer.blocks[0].ls2, LayerScale)
    timm_style = {
        k.replace("scale_factor", "gamma"): v + 1 for k, v in model.vision_backbone.featurizer.state_dict().items()
    }
    assert rename_timm_keys(timm_style).keys() == model.vision_backbone.featurizer.state_dict().keys()
    clone = tiny_model(seed=1).vision_backbone.featurizer
    clone.load_state_dict(timm_style)  # `gamma` keys are accepted by load_state_dict
    torch.testing.assert_close(
        clone.blocks[1].ls1.scale_factor, model.vision_backbone.featurizer.blocks[1].ls1.scale_factor + 1
    )


def test_fsdp_wrap_classes_cover_vit_blocks_decoder_layers_and_projector(model):
    names = {cls.__name__ for cls in model.fsdp_wrap_classes()}
    assert names == {"Block", "LlamaDecoderLayer", "PrismaticProjector"}


def test_save_pretrained_round_trip_gives_identical_outputs(model, batch, tmp_path):
    model.config.norm_stats = {"d": {"action": {"q01": [0.0], "q99": [1.0]}}}
    model.save_pretrained(tmp_path)
    loaded = OpenVLAForActionPrediction.from_pretrained(tmp_path).eval()
    assert loaded.config.norm_stats == model.config.norm_stats
    assert loaded.config.timm_model_kwargs == model.config.timm_model_kwargs
    assert set(loaded.state_dict()) == set(model.state_dict())
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    model.config.norm_stats = None


def test_logits_to_keep_gives_the_same_loss_and_tail_logits(model, batch):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
    keep = model.min_logits_to_keep(batch["labels"])
    first_label = int((batch["labels"] != IGNORE_INDEX).any(0).nonzero()[0, 0])
    assert keep == batch["labels"].shape[1] - first_label + 1
    with torch.no_grad():
        full = model(**inputs)
        tail = model(**inputs, logits_to_keep=keep)
    assert tail.logits.shape == (3, keep, 32064)
    torch.testing.assert_close(tail.logits, full.logits[:, -keep:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tail.loss, full.loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="drops labelled positions"):
        model(**inputs, logits_to_keep=keep - 1)
