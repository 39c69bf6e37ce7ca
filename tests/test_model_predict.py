"""predict_action: OpenVLA semantics, batching that matches one prompt at a time, and a tiny model that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openvla.actions import ActionTokenizer, unnormalize
from openvla.model.vla import OpenVLAForActionPrediction, UnnormKeyError
from tests.model_fixtures import mistral_tokenizer, norm_stats, tiny_batch, tiny_model

SPACE = 28705  # "▁" in the Mistral v1 vocabulary (tiny config)


@pytest.fixture(scope="module")
def model() -> OpenVLAForActionPrediction:
    m = tiny_model(seed=3)
    m.config.norm_stats = norm_stats()
    return m


def prompts(texts: list[str]) -> list[torch.Tensor]:
    tok = mistral_tokenizer()
    return [torch.tensor(tok(f"In: What action should the robot take to {t}?\nOut:").input_ids) for t in texts]


def pad(rows: list[torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), 32000)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(0, len(r)) if side == "right" else slice(length - len(r), length)
        ids[i, sl], mask[i, sl] = r, 1
    return ids, mask


TEXTS = ["pick up the black bowl", "put the bowl on the plate next to the cookie box", "open the drawer"]


def test_batched_generation_equals_one_prompt_at_a_time(model):
    rows = prompts(TEXTS)
    pixels = torch.randn(3, 6, 112, 112, generator=torch.Generator().manual_seed(0))
    single = [model.generate_action_tokens(r[None], pixels[i : i + 1], num_tokens=7)[0] for i, r in enumerate(rows)]
    for side in ("right", "left"):
        ids, mask = pad(rows, side)
        batched = model.generate_action_tokens(ids, pixels, attention_mask=mask, num_tokens=7)
        assert batched.shape == (3, 7)
        for i in range(3):
            assert batched[i].tolist() == single[i].tolist(), (side, i)
    actions = model.predict_action(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    assert actions.shape == (3, 7)
    one = model.predict_action(input_ids=rows[1][None], pixel_values=pixels[1:2])
    assert one.shape == (7,)  # one prompt → (action_dim,) as OpenVLA
    np.testing.assert_array_equal(actions[1], one)


def test_generation_matches_a_full_forward_without_cache(model):
    """The KV-cache loop gives the greedy tokens of recomputing the whole sequence each step."""
    (row,) = prompts(TEXTS[:1])
    pixels = torch.randn(1, 6, 112, 112, generator=torch.Generator().manual_seed(1))
    ids = torch.cat([row, torch.tensor([SPACE])])[None]
    with torch.no_grad():
        for _ in range(4):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert model.generate_action_tokens(row[None], pixels, num_tokens=4)[0].tolist() == ids[0, -4:].tolist()


def test_space_token_is_appended_only_when_missing(model):
    (row,) = prompts(TEXTS[:1])
    pixels = torch.randn(1, 6, 112, 112, generator=torch.Generator().manual_seed(2))
    without = model.generate_action_tokens(row[None], pixels, num_tokens=7)
    with_space = model.generate_action_tokens(torch.cat([row, torch.tensor([SPACE])])[None], pixels, num_tokens=7)
    assert without.tolist() == with_space.tolist()


def test_predict_action_decodes_bins_and_unnormalizes(model, monkeypatch):
    tokens = torch.tensor([[31999, 31744, 31900, 31872, 31800, 31950, 31744]])
    monkeypatch.setattr(model, "generate_action_tokens", lambda *a, **k: tokens)
    (row,) = prompts(TEXTS[:1])
    actions = model.predict_action(input_ids=row[None], pixel_values=torch.zeros(1, 6, 112, 112))
    normalized = ActionTokenizer(32000, 256).decode(tokens.numpy()[0])
    stats = norm_stats()["libero_embedded"]["action"]
    np.testing.assert_allclose(actions, unnormalize(normalized, stats), rtol=0, atol=1e-6)
    # Hand check, first dim: id 31999 → bin 0 → centre −1 + 1/255; q01 −1, q99 0.3 → 0.5·(x + 1)·1.3 − 1.
    assert actions[0] == pytest.approx(0.5 * (1 / 255) * 1.3 - 1.0, abs=1e-6)
    assert actions[6] == pytest.approx(normalized[6])  # gripper: mask false → left normalized


def test_unnorm_key_rules(model):
    assert model.get_action_dim() == 7
    stats = {**norm_stats(key="a"), **norm_stats(key="b")}
    model.config.norm_stats = stats
    try:
        with pytest.raises(UnnormKeyError, match=r"pass unnorm_key, one of \['a', 'b'\]"):
            model.get_action_stats()
        with pytest.raises(UnnormKeyError, match="available keys"):
            model.get_action_stats("bridge_orig")
        assert model.get_action_stats("b") == stats["b"]["action"]
    finally:
        model.config.norm_stats = norm_stats()


def test_tiny_model_learns_one_sample_and_greedy_decoding_reproduces_its_action_tokens():
    torch.manual_seed(0)
    model = tiny_model(seed=0).train()
    batch = tiny_batch(1, seed=5)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
    target = batch["input_ids"][0, -8:-1].tolist()  # the 7 action ids before </s>
    prompt = batch["input_ids"][:, :-8]  # ends with "▁"
    assert prompt[0, -1] == SPACE
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reproduced_at = None
    for step in range(1, 61):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if (
            step % 5 == 0
            and model.generate_action_tokens(prompt, batch["pixel_values"], num_tokens=7)[0].tolist() == target
        ):
            reproduced_at = step
            break
    assert reproduced_at is not None, f"not reproduced after 60 steps (loss {loss.item():.3f})"


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    (row,) = prompts(TEXTS[:1])
    pixels = torch.randn(1, 6, 112, 112, generator=torch.Generator().manual_seed(4))
    draws = [
        model.generate_action_tokens(
            row[None], pixels, num_tokens=7, do_sample=True, generator=torch.Generator().manual_seed(9)
        )
        for _ in range(2)
    ]
    assert draws[0].tolist() == draws[1].tolist()
    assert ((draws[0] >= 0) & (draws[0] < 32064)).all()
