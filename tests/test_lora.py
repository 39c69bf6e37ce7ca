"""LoRA fine-tuning: only the adapters learn, the output head and dead layers get none, and merging changes nothing
about the model's outputs."""

from __future__ import annotations

import pytest
import torch

from openvla.train.lora import apply_lora, dead_linear_modules, is_lora_parameter, merge_lora


@pytest.fixture(scope="module")
def batch():
    from model_fixtures import tiny_batch

    return tiny_batch(n=2, seed=1)


@pytest.fixture
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and fast on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def _tiny(seed: int = 0):
    from openvla.model import build_vla, get_model_config

    torch.manual_seed(seed)
    return build_vla(get_model_config("tiny"), attn_implementation="sdpa")


def _inputs(batch: dict, labels: bool = True) -> dict:
    keys = ("input_ids", "attention_mask", "pixel_values") + (("labels",) if labels else ())
    return {k: batch[k] for k in keys}


def test_only_adapter_parameters_get_gradients(batch, single_thread):
    model = _tiny()
    dead = set(dead_linear_modules(model))
    # the ViTs' last block (features come from the one before) and SigLIP's pooling head
    assert dead and all(".blocks.3." in name or ".attn_pool." in name for name in dead), sorted(dead)
    peft_model = apply_lora(model, rank=4, alpha=4)
    names = [n for n, _ in peft_model.named_parameters()]
    assert not any(is_lora_parameter(n) and "lm_head" in n for n in names), "the output head must not be adapted"
    assert not any(is_lora_parameter(n) and any(f"{d}.lora_" in n for d in dead) for n in names)
    adapted = {n.split(".lora_")[0] for n in names if is_lora_parameter(n)}
    for part in ("featurizer.blocks.0.attn.qkv", "fused_featurizer.blocks.2.mlp.fc2", "projector.fc3",
                 "self_attn.q_proj", "mlp.down_proj"):  # fmt: skip
        assert any(part in a for a in adapted), f"no adapter on {part}"

    out = peft_model(**_inputs(batch))
    out.loss.backward()
    for name, param in peft_model.named_parameters():
        if is_lora_parameter(name):
            assert param.requires_grad and param.grad is not None, name
        else:
            assert not param.requires_grad and param.grad is None, name
    # gaussian init: A random, B zero → the adapted model starts as the base; B gets the first gradient
    assert any(p.grad.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)


def test_merged_model_outputs_equal_the_adapter_model(batch, single_thread):
    peft_model = apply_lora(_tiny(), rank=8, alpha=8)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # move B away from zero so the merge has something to fold
        peft_model(**_inputs(batch)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.eval()
    base_logits = None
    with torch.no_grad():
        adapter_logits = peft_model(**_inputs(batch, labels=False)).logits
        with peft_model.disable_adapter():
            base_logits = peft_model(**_inputs(batch, labels=False)).logits
    assert (adapter_logits - base_logits).abs().max() > 1e-3, "the adapters changed nothing: the test would be void"
    merged = merge_lora(peft_model).eval()
    assert not any(is_lora_parameter(n) for n, _ in merged.named_parameters())
    assert type(merged).__name__ == "OpenVLAForActionPrediction"
    with torch.no_grad():
        merged_logits = merged(**_inputs(batch, labels=False)).logits
    torch.testing.assert_close(merged_logits, adapter_logits, atol=2e-4, rtol=1e-4)
