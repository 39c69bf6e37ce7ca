"""Action chunks, parallel decoding, the L1 head and the proprio token (OpenVLA-OFT options of the one model).

* the parallel-decoding mask is causal over the prompt and bidirectional over the action slots (entry by entry),
  and the model really uses it (a slot sees the later slots, the prompt sees no slot);
* token by token with a chunk: one teacher-forced forward gives the logits of the K·D autoregressive steps, and
  a model trained with teacher forcing on a fixed sample decodes that sample's K·D tokens both ways;
* parallel decoding (tokens head) trained on a fixed sample predicts its K·D tokens in one forward;
* export → load through the Auto classes round-trips both heads (config keys, head weights, predictions);
* training batches and params: the transform, the objective's metrics, finetune refusing other options.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openvla.actions import ActionTokenizer
from openvla.model import build_vla, get_model_config, set_action_options
from openvla.model.action_heads import parallel_attention_mask
from openvla.model.batching import PaddedCollator, VLABatchTransform
from openvla.model.image_processing import PrismaticImageProcessor
from openvla.model.prompts import build_action_prompt, get_prompt_builder
from tests.model_fixtures import INSTRUCTIONS, fake_frame, mistral_tokenizer

K, D, P = 2, 7, 8


def stats(key: str = "libero_embedded") -> dict:
    q01 = np.linspace(-1.0, -0.2, D)
    q99 = np.linspace(0.3, 1.5, D)
    proprio = {"q01": [-0.5] * P, "q99": [0.5] * P, "min": [-1.0] * P, "max": [1.0] * P}
    action = {"q01": q01.tolist(), "q99": q99.tolist(), "mask": [True] * (D - 1) + [False]}
    action.update(min=(q01 - 0.1).tolist(), max=(q99 + 0.1).tolist())
    return {key: {"action": action, "proprio": proprio}}


def chunk_model(head: str = "tokens", parallel: bool = True, proprio: bool = False, chunk: int = K, seed: int = 0):
    config = get_model_config("tiny")
    set_action_options(
        config, action_head=head, parallel_decoding=parallel, chunk=chunk, use_proprio=proprio, statistics=stats()
    )
    config.norm_stats = stats()
    torch.manual_seed(seed)
    return build_vla(config, "sdpa").eval()


def transform_for(model) -> VLABatchTransform:
    cfg = model.config
    return VLABatchTransform(
        mistral_tokenizer(),
        ActionTokenizer(cfg.base_vocab_size, cfg.n_action_bins),
        PrismaticImageProcessor.from_vla_config(cfg),
        lambda: get_prompt_builder(cfg.llm_backbone_id),
        action_chunk=cfg.action_chunk,
        parallel_decoding=cfg.parallel_decoding,
        use_proprio=cfg.use_proprio,
    )


def batch_for(model, n: int = 2, seed: int = 0) -> dict:
    transform = transform_for(model)
    frames = [fake_frame(seed + i, INSTRUCTIONS[i % 3], chunk=model.config.action_chunk) for i in range(n)]
    for i, frame in enumerate(frames):
        frame["observation"]["proprio"] = np.full((1, P), 0.1 * (i + 1), np.float32)
    return PaddedCollator(mistral_tokenizer().pad_token_id)([transform(f) for f in frames])


# -- the mask -------------------------------------------------------------------------------------------------------
def test_parallel_mask_is_causal_over_the_prompt_and_bidirectional_over_slots_entry_by_entry():
    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)  # row 0 left-padded
    slots = 3
    mask = parallel_attention_mask(padding, slots)
    assert mask.shape == (2, 1, 7, 7)
    total = 7
    for b in range(2):
        for i in range(total):
            for j in range(total):
                real_i, real_j = bool(padding[b, i]), bool(padding[b, j])
                slot_i, slot_j = i >= total - slots, j >= total - slots
                if not real_i:
                    expected = i == j  # a padding query sees only itself (no empty row)
                elif slot_i and slot_j:
                    expected = True  # slots see every slot, earlier or later
                else:
                    expected = real_j and j <= i  # causal, never a padding key
                assert bool(mask[b, 0, i, j]) == expected, (b, i, j)
    # spot checks that read as the definition: prompt token 3 cannot see slot 4; slot 4 sees slot 6
    assert not mask[1, 0, 3, 4] and mask[1, 0, 4, 6] and mask[1, 0, 6, 4]


def test_model_uses_the_mask_slots_see_later_slots_and_the_prompt_sees_no_slot():
    model = chunk_model("tokens", parallel=True)
    batch = batch_for(model, n=1)
    inputs = dict(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"])
    with torch.no_grad():
        base = model(**inputs).logits
        model.action_queries.weight[-1] += 1.0  # perturb the last slot's input
        moved = model(**inputs).logits
    # every slot changes (bidirectional), not only the last one
    per_slot = (moved - base).abs().amax(dim=-1)[0]
    assert (per_slot > 1e-4).all(), per_slot
    # the prompt does not see the slots: its hidden states equal a plain causal forward without slots
    embeds, mask, positions = model._left_aligned_prompt(batch["input_ids"], batch["pixel_values"], None, None)
    with torch.no_grad():
        plain = model.get_decoder()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
        hidden = {}
        handle = model.get_decoder().norm.register_forward_hook(lambda m, a, out: hidden.setdefault("h", out))
        model(**inputs)
        handle.remove()
    prompt_len = embeds.shape[1]
    torch.testing.assert_close(hidden["h"][:, :prompt_len], plain.last_hidden_state, atol=1e-5, rtol=1e-5)


# -- token by token vs one forward ----------------------------------------------------------------------------------
def _train(model, batch: dict, steps: int, lr: float = 3e-3) -> list[float]:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    keys = ("input_ids", "attention_mask", "pixel_values", "labels", "action_labels", "actions", "proprio")
    inputs = {k: batch[k] for k in keys if k in batch}
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def test_one_teacher_forced_forward_equals_kd_autoregressive_steps_and_decodes_the_trained_sample():
    model = chunk_model("tokens", parallel=False, chunk=K)
    batch = batch_for(model, n=1, seed=3)
    losses = _train(model, batch, steps=80)
    assert losses[-1] < 0.05 * losses[0]
    ids, labels = batch["input_ids"], batch["labels"]
    n = K * D
    target = labels[0, -(n + 1) : -1]  # the K·D action tokens (EOS last)
    with torch.no_grad():
        one = model(input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]).logits
    # position p predicts token p + 1: the K·D action tokens are predicted by the K·D positions before them
    forward_logits = one[0, -(n + 2) : -2]
    assert torch.equal(forward_logits.argmax(-1), target)
    # K·D autoregressive steps (prompt ends with "▁", as in training) give the same tokens ...
    prompt = ids[:, : ids.shape[1] - n - 1]
    generated = model.generate_action_tokens(prompt, batch["pixel_values"], num_tokens=n)
    assert torch.equal(generated[0], target)
    # ... and, step by step with the cache, the same logits as the one forward
    embeds, mask, positions = model._left_aligned_prompt(prompt, batch["pixel_values"], None, None)
    lm = model.language_model
    with torch.no_grad():
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
        step_logits = [out.logits[0, -1]]
        for t in range(n - 1):
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = lm(input_ids=target[None, t : t + 1], attention_mask=mask, position_ids=positions,
                     cache=out.cache, use_cache=True)  # fmt: skip
            step_logits.append(out.logits[0, -1])
    torch.testing.assert_close(torch.stack(step_logits), forward_logits, atol=1e-4, rtol=1e-4)


def test_parallel_tokens_head_trained_on_a_sample_predicts_its_kd_tokens_in_one_forward():
    model = chunk_model("tokens", parallel=True, chunk=K)
    batch = batch_for(model, n=1, seed=5)
    assert batch["action_labels"].shape == (1, K * D)
    losses = _train(model, batch, steps=80)
    assert losses[-1] < 0.05 * losses[0]
    chunk = model.predict_normalized_chunk(batch["input_ids"], batch["pixel_values"])
    expected = model.action_tokenizer.decode(batch["action_labels"].numpy()).reshape(1, K, D)
    np.testing.assert_array_equal(chunk, expected)


def test_predict_action_shapes_and_batch_equals_one_at_a_time():
    model = chunk_model("l1", parallel=True, proprio=True, chunk=K)
    batch = batch_for(model, n=2)
    raw = np.array([[0.1] * P, [-0.2] * P])
    both = model.predict_action(batch["input_ids"], batch["pixel_values"], batch["attention_mask"], proprio=raw)
    assert both.shape == (2, K, D)
    for i in range(2):
        row = batch["attention_mask"][i]
        one = model.predict_action(batch["input_ids"][i : i + 1, row], batch["pixel_values"][i : i + 1], proprio=raw[i])
        assert one.shape == (K, D)
        np.testing.assert_allclose(one, both[i], atol=1e-5)
    with pytest.raises(ValueError, match="proprio"):
        model.predict_action(batch["input_ids"][:1], batch["pixel_values"][:1])
    # proprio matters: another state gives another chunk
    other = model.predict_action(batch["input_ids"][:1, batch["attention_mask"][0]], batch["pixel_values"][:1],
                                 proprio=raw[1])  # fmt: skip
    assert np.abs(other - both[0]).max() > 1e-6


# -- export → load ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["tokens", "l1"])
def test_export_load_round_trip_keeps_chunk_head_and_predictions(head, tmp_path):
    import json

    from transformers import AutoModelForImageTextToText, AutoProcessor

    from openvla.hf.export import export_hf
    from openvla.hf.official import weight_keys

    model = chunk_model(head, parallel=True, proprio=head == "l1", chunk=K, seed=1)
    source = tmp_path / "merged"
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    out = tmp_path / "hf"
    export_hf(source, out, max_shard_size="5GB", dtype="auto", tokenizer="mistral-v1")
    config = json.loads((out / "config.json").read_text())
    assert (config["action_head"], config["action_chunk"], config["parallel_decoding"]) == (head, K, True)
    assert config["use_proprio"] is (head == "l1") and config["action_dim"] == D
    keys = set(weight_keys(out))
    assert "action_queries.weight" in keys
    assert any(k.startswith("l1_head.") for k in keys) is (head == "l1")
    assert any(k.startswith("proprio_projector.") for k in keys) is (head == "l1")

    loaded = AutoModelForImageTextToText.from_pretrained(out).eval()
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    processor = AutoProcessor.from_pretrained(out)
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8))
    inputs = processor(build_action_prompt("pick up the bowl", model.config.llm_backbone_id), image)
    kwargs = {"proprio": np.zeros(P)} if head == "l1" else {}
    expected = model.predict_action(**inputs, **kwargs)
    actual = loaded.predict_action(**inputs, **kwargs)
    assert actual.shape == (K, D)
    np.testing.assert_array_equal(actual, expected)


# -- training side --------------------------------------------------------------------------------------------------
def test_objective_metrics_for_both_parallel_heads():
    from openvla.train.vla import VLAObjective

    for head in ("tokens", "l1"):
        model = chunk_model(head, parallel=True, proprio=True)
        batch = batch_for(model, n=2)
        loss, sums = VLAObjective(ActionTokenizer(model.config.base_vocab_size), torch.device("cpu"))(model, batch)
        assert sums["count"] == 2 * K * D and sums["l1_sum"] > 0
        assert ("correct" in sums) is (head == "tokens")
        if head == "l1":  # the loss is the mean |error| the sums describe
            assert float(loss.detach()) == pytest.approx(sums["l1_sum"] / sums["count"], rel=1e-4)


def test_set_action_options_reads_dims_from_statistics_and_l1_implies_parallel():
    config = get_model_config("tiny")
    set_action_options(config, action_head="l1", parallel_decoding=False, chunk=8, use_proprio=True, statistics=stats())
    assert (config.parallel_decoding, config.action_chunk, config.action_dim, config.proprio_dim) == (True, 8, D, P)
    config.parallel_decoding = False
    with pytest.raises(ValueError, match="parallel_decoding"):
        config.validate_action_options()


def test_transform_refuses_frames_with_a_shorter_chunk_than_the_model():
    model = chunk_model("tokens", parallel=True, chunk=4)
    with pytest.raises(ValueError, match=r"data\.chunk"):
        transform_for(model)(fake_frame(0, "pick", chunk=2))
