"""FAST action tokens (DESIGN §15): DCT + scale + round + BPE over chunks, the ids they take, and their repair."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from openvla.actions import FastActionTokenizer, load_action_tokenizer, resolve_action_tokenizer, save_action_tokenizer
from openvla.actions.fast import chunks_from_episodes, coefficient_bound, dct, idct, max_abs_error

V = 32000
K, D = 8, 7


def smooth_episodes(n_episodes: int = 30, length: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalized robot-like actions: 6 smooth dimensions (low-frequency sines + a little noise) and a binary
    gripper that closes once per episode. Returns (actions (N, 7), episode ids (N,))."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    rows, ids = [], []
    for e in range(n_episodes):
        freq = rng.uniform(0.01, 0.06, size=(1, 6))
        phase = rng.uniform(0, 2 * np.pi, size=(1, 6))
        amp = rng.uniform(0.3, 0.9, size=(1, 6))
        arm = amp * np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.02, size=(length, 6))
        gripper = (t >= rng.integers(10, length - 10)).astype(np.float64)
        rows.append(np.clip(np.concatenate([arm, gripper], axis=1), -1, 1))
        ids.append(np.full(length, e))
    return np.concatenate(rows), np.concatenate(ids)


@pytest.fixture(scope="module")
def split_chunks() -> tuple[np.ndarray, np.ndarray]:
    actions, episodes = smooth_episodes()
    chunks, _ = chunks_from_episodes(actions, episodes, K)
    held = np.isin(episodes, np.arange(0, 30, 10))  # episodes 0, 10, 20 held out
    return chunks[~held], chunks[held]


@pytest.fixture(scope="module")
def fitted(split_chunks) -> FastActionTokenizer:
    return FastActionTokenizer.fit(split_chunks[0], V, scale=10.0, fast_vocab_size=1024)


def test_dct_is_orthonormal_and_the_coefficient_bound_holds_for_extreme_chunks():
    x = np.random.default_rng(1).uniform(-1, 1, size=(K, D))
    np.testing.assert_allclose(idct(dct(x)), x, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(dct(x), axis=0), np.linalg.norm(x, axis=0), atol=1e-12)
    assert coefficient_bound(8, 10.0) == 29  # ceil(10·√8 = 28.28)
    assert max_abs_error(8, 10.0) == pytest.approx(0.5 * math.sqrt(8) / 10)
    tok = FastActionTokenizer.fit(np.random.default_rng(2).uniform(-1, 1, size=(50, K, D)), V, fast_vocab_size=256)
    for value in (1.0, -1.0):  # the largest DC coefficient: √8 · 10 → 28, inside the alphabet
        chunk = np.full((K, D), value)
        assert tok.coefficients(chunk)[0].tolist() == [round(value * 10 * math.sqrt(8))] * D
        np.testing.assert_allclose(tok.decode_chunk(tok.encode_chunk(chunk)), chunk, atol=max_abs_error(K, 10.0))


def test_round_trip_of_held_out_chunks_is_within_the_rounding_bound(fitted, split_chunks):
    _, heldout = split_chunks
    assert len(heldout) == 180
    sequences = fitted.encode_chunks(heldout)
    decoded = fitted.decode_chunks(sequences)
    assert decoded.shape == heldout.shape and decoded.dtype == np.float32
    err = np.abs(decoded.astype(np.float64) - heldout)
    # per value: 0.5·√K / scale; per dimension of a chunk, root mean square: 0.5 / scale (Parseval)
    assert err.max() <= max_abs_error(K, 10.0) + 1e-6
    assert np.sqrt((err**2).mean(axis=1)).max() <= 0.5 / 10 + 1e-6
    assert 0.005 < err.mean() < 0.03  # rounding of ~uniform error: mean |e| ≈ 0.25/scale per coefficient
    # BPE is lossless: the integers come back exactly, so the only error is the rounding
    np.testing.assert_array_equal(
        np.rint(dct(decoded.astype(np.float64), axis=1) * 10).astype(np.int64), fitted.coefficients(heldout)
    )
    assert fitted.repair_counts()["repaired"] == 0


def test_every_id_is_inside_the_reserved_range_and_chunks_compress(fitted, split_chunks):
    train, heldout = split_chunks
    assert fitted.bpe_vocab_size <= 1024 and fitted.bpe_vocab_size > 59  # alphabet of 59 symbols + merges
    assert fitted.action_token_begin_idx == V - 1025 and fitted.first_learned_id == V - fitted.bpe_vocab_size
    lengths = []
    for chunks in (train, heldout):
        for ids in fitted.encode_chunks(chunks):
            assert ids.dtype == np.int64 and 1 <= len(ids) <= K * D
            assert ids.min() >= V - 1024 and ids.max() <= V - 1
            assert fitted.is_action_token(ids).all()
            lengths.append(len(ids))
    assert np.mean(lengths) < K * D / 2  # smooth chunks: fewer than 28 tokens instead of 56
    assert fitted.max_tokens == 56


def test_fitting_is_deterministic(split_chunks, fitted):
    again = FastActionTokenizer.fit(split_chunks[0], V, scale=10.0, fast_vocab_size=1024)
    assert again.bpe_json() == fitted.bpe_json()
    for a, b in zip(again.encode_chunks(split_chunks[1][:20]), fitted.encode_chunks(split_chunks[1][:20]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_corrupt_sequences_are_repaired_and_counted(fitted, split_chunks, caplog):
    chunk = split_chunks[1][5]
    ids = fitted.encode_chunk(chunk)
    good = fitted.decode_chunk(ids)
    tok = FastActionTokenizer(V, K, D, fitted.bpe, scale=10.0, fast_vocab_size=1024)  # fresh counters
    with caplog.at_level(logging.WARNING, logger="openvla.actions.fast"):
        short = tok.decode_chunk(ids[:-1])  # last piece missing → zero-padded high frequencies
        long = tok.decode_chunk(np.r_[ids, ids[:3]])  # extra pieces → cut
        noisy = tok.decode_chunk(np.r_[ids[:2], 2, 1000, V - 1025, V, ids[2:]])  # </s>, text ids, <PAD>
        empty = tok.decode_chunk([])
    assert all(x.shape == (K, D) and np.isfinite(x).all() for x in (short, long, noisy, empty))
    np.testing.assert_array_equal(long, good)  # the cut removes exactly what was appended
    np.testing.assert_array_equal(noisy, good)  # dropping the invalid ids restores the sequence
    np.testing.assert_array_equal(empty, np.zeros((K, D), np.float32))
    assert np.abs(short - good).max() <= 1.0  # a plausible chunk, only the last coefficients differ
    assert tok.repair_counts() == {"decoded": 4, "dropped_ids": 1, "padded": 2, "cut": 1, "repaired": 4}
    assert sum("FAST: repaired" in r.getMessage() for r in caplog.records) == 4
    tok.reset_repair_counts()
    assert tok.repair_counts()["decoded"] == 0


def test_saved_tokenizer_restores_the_same_ids(tmp_path, fitted, split_chunks):
    save_action_tokenizer(fitted, tmp_path / "tok", extra={"datasets": ["synthetic"]})
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["action_tokenizer.json", "fast_bpe.json"]
    loaded = load_action_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, FastActionTokenizer) and repr(loaded) == repr(fitted)
    for a, b in zip(loaded.encode_chunks(split_chunks[1]), fitted.encode_chunks(split_chunks[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert isinstance(resolve_action_tokenizer(tmp_path / "tok", V, 256), FastActionTokenizer)
    with pytest.raises(ValueError, match="vocab_size=32000"):
        resolve_action_tokenizer(tmp_path / "tok", 32064, 256)
    # the per-value interface stays OpenVLA's uniform bins (bin agreement in value-by-value metrics)
    np.testing.assert_array_equal(loaded.encode(np.array([-1.0, 0.0, 1.0])), [V - 1, V - 128, V - 256])


def test_chunks_follow_the_training_pipeline_clamped_at_the_episode_end():
    actions = np.arange(10, dtype=np.float64)[:, None]
    chunks, _ = chunks_from_episodes(actions, np.array([0] * 4 + [1] * 6), 3)
    assert chunks[:, :, 0].tolist() == [
        [0, 1, 2], [1, 2, 3], [2, 3, 3], [3, 3, 3], [4, 5, 6], [5, 6, 7], [6, 7, 8], [7, 8, 9], [8, 9, 9], [9, 9, 9],
    ]  # fmt: skip


def test_invalid_configurations_fail_clearly(split_chunks):
    with pytest.raises(ValueError, match="smaller than the 59 integer symbols"):
        FastActionTokenizer.fit(split_chunks[0][:10], V, fast_vocab_size=32)
    with pytest.raises(ValueError, match=r"fitted for chunks of shape \(8, 7\)"):
        FastActionTokenizer.fit(split_chunks[0][:10], V, fast_vocab_size=256).encode_chunk(np.zeros((4, 7)))


def test_prompts_never_produce_fast_ids():
    """The reserved FAST range (the last 1024 ids) never appears in a prompt: test instructions and LIBERO tasks."""
    from openvla.model.configs import get_model_config
    from openvla.model.prompts import build_action_prompt
    from openvla.model.text_tokenizer import load_text_tokenizer

    tokenizer = load_text_tokenizer("mistral-v1")
    assert tokenizer.vocab_size == V
    config = get_model_config("tiny")
    instructions = [
        "put the bowl on the plate",
        "pick up the black bowl between the plate and the ramekin and place it on the plate",
        "Put the Spoon on the Towel!",
        "open the top drawer of the cabinet; then push the plate to the front of the stove",
    ]
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            from libero.libero import benchmark

            suites = benchmark.get_benchmark_dict()
            for suite in ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90"):
                bench = suites[suite]()
                instructions += [bench.get_task(i).language for i in range(bench.n_tasks)]
        assert len(instructions) == 4 + 130
    except ImportError:  # pragma: no cover - LIBERO is part of the sim extra
        pass
    highest = max(
        max(tokenizer(build_action_prompt(text, config.llm_backbone_id), add_special_tokens=True).input_ids)
        for text in instructions
    )
    assert highest < V - 1024


# -- training labels and decoding with the tiny VLA ------------------------------------------------------------------
def _fast_model(fitted, seed: int = 0):
    from test_action_chunks import chunk_model

    model = chunk_model("tokens", parallel=False, chunk=K, seed=seed)
    model.action_tokenizer = fitted
    return model


def _fast_transform(model, tokenizer):
    from model_fixtures import mistral_tokenizer

    from openvla.model.batching import VLABatchTransform
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.prompts import get_prompt_builder

    cfg = model.config
    return VLABatchTransform(
        mistral_tokenizer(),
        tokenizer,
        PrismaticImageProcessor.from_vla_config(cfg),
        lambda: get_prompt_builder(cfg.llm_backbone_id),
        action_chunk=cfg.action_chunk,
        parallel_decoding=cfg.parallel_decoding,
        use_proprio=cfg.use_proprio,
    )


def _fast_batch(model, tokenizer, chunks: np.ndarray) -> dict:
    from model_fixtures import INSTRUCTIONS, fake_frame, mistral_tokenizer

    from openvla.model.batching import PaddedCollator

    transform = _fast_transform(model, tokenizer)
    frames = []
    for i, chunk in enumerate(chunks):
        frame = fake_frame(i, INSTRUCTIONS[i % 3], chunk=K)
        frame["action"] = chunk[None].astype(np.float32)
        frames.append(frame)
    return PaddedCollator(mistral_tokenizer().pad_token_id)([transform(f) for f in frames])


def _prompts(batch: dict) -> tuple:
    """Each row's prompt (up to and including "▁", before the first label), right-padded, and its mask."""
    import torch

    lengths = [int(row.ne(-100).nonzero()[0]) for row in batch["labels"]]
    ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = batch["input_ids"][i, :n], 1
    return ids, mask


def test_training_sequence_is_the_prompt_space_fast_ids_and_eos(fitted, split_chunks):
    from model_fixtures import INSTRUCTIONS, fake_frame
    from test_action_chunks import chunk_model, transform_for

    model = _fast_model(fitted)
    chunk = split_chunks[1][7]
    frame = fake_frame(0, INSTRUCTIONS[1], chunk=K)
    frame["action"] = chunk[None].astype(np.float32)
    item = _fast_transform(model, fitted)(frame)
    uniform = transform_for(model)(frame)  # OpenVLA's K·D tokens of the same chunk (re-tokenized text)
    fast_ids = fitted.encode_chunk(chunk.astype(np.float32)).tolist()
    n = len(fast_ids)
    assert 1 <= n < K * D
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    assert ids[-(n + 1) :] == [*fast_ids, 2]  # FAST ids + </s>
    assert ids[: -(n + 1)] == uniform["input_ids"].tolist()[: -(K * D + 1)]  # same prefix, ending with "▁"
    assert ids[-(n + 2)] == model.config.space_token_id == 28705
    assert labels[: -(n + 1)] == [-100] * (len(ids) - n - 1) and labels[-(n + 1) :] == ids[-(n + 1) :]
    with pytest.raises(ValueError, match="parallel_decoding=false"):
        _fast_transform(chunk_model("tokens", parallel=True, chunk=K), fitted)
    with pytest.raises(ValueError, match=r"bins\.fast_chunk = data\.chunk"):
        _fast_transform(chunk_model("tokens", parallel=False, chunk=2), fitted)


def test_tiny_vla_learns_fast_sequences_and_decodes_them_to_chunks(fitted, split_chunks, tmp_path):
    """A few training steps on two chunks; greedy decoding until </s> gives back their FAST ids, so the predicted
    chunks equal the tokenizer's decoding of them (no repair), one prompt at a time or as a batch; the objective
    trains on it; the export carries the tokenizer and a loaded Policy predicts the same chunks."""
    import torch
    from test_action_chunks import _train

    from openvla.train.vla import VLAObjective

    model = _fast_model(fitted, seed=1)
    chunks = split_chunks[1][[3, 100]]
    batch = _fast_batch(model, fitted, chunks)
    targets = fitted.encode_chunks(chunks.astype(np.float32))
    assert len(targets[0]) != len(targets[1])  # variable lengths, right-padded by the collator
    loss, sums = VLAObjective(fitted, torch.device("cpu"))(model, batch)
    assert torch.isfinite(loss) and sums["count"] == sum(len(t) for t in targets)  # accuracy over FAST ids only
    losses = _train(model, batch, steps=60)
    assert losses[-1] < 0.05 * losses[0]

    ids, mask = _prompts(batch)
    pixels = batch["pixel_values"]
    assert mask.sum(1).tolist() == [20, 21]  # prompts of different lengths, right-padded
    rows, ended = model.generate_until_eos(ids, pixels, mask, max_tokens=K * D + 1)
    assert ended.all() and [r.tolist() for r in rows] == [t.tolist() for t in targets]
    fitted.reset_repair_counts()
    predicted = model.predict_normalized_chunk(ids, pixels, mask)
    assert fitted.repair_counts() == {"decoded": 2, "dropped_ids": 0, "padded": 0, "cut": 0, "repaired": 0}
    np.testing.assert_array_equal(predicted, fitted.decode_chunks(targets))
    assert np.abs(predicted - chunks).max() <= max_abs_error(K, 10.0) + 1e-6
    one = model.predict_normalized_chunk(ids[1:, : int(mask[1].sum())], pixels[1:])  # alone = in the batch
    np.testing.assert_array_equal(one[0], predicted[1])
    actions = model.predict_action(ids[:1, : int(mask[0].sum())], pixels[:1], unnorm_key="libero_embedded")
    assert actions.shape == (K, D)  # unnormalized with the model's statistics
    with pytest.raises(ValueError, match="use predict_fast_tokens"):
        model.predict_chunk_tokens(ids, pixels, mask)

    # export → Policy: the FAST tokenizer travels in action_tokenizer/ and decodes the same chunks
    import json

    from PIL import Image

    from openvla.actions import save_action_tokenizer
    from openvla.hf.export import export_hf
    from openvla.policy import Policy

    source = tmp_path / "merged"
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    save_action_tokenizer(fitted, source / "action_tokenizer")
    export_hf(source, tmp_path / "hf", max_shard_size="5GB", dtype="auto", tokenizer="mistral-v1")
    policy = Policy.from_pretrained(tmp_path / "hf", device="cpu")
    assert isinstance(policy.action_tokenizer, FastActionTokenizer) and policy.chunk_size == K
    frame = Image.fromarray(np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8))
    from model_fixtures import INSTRUCTIONS

    prediction = policy.predict([np.asarray(frame)] * 2, [INSTRUCTIONS[0], INSTRUCTIONS[1]])
    assert prediction.chunk.shape == (2, K, D) and prediction.chunk_actions.shape == (2, K, D)
    assert prediction.tokens.shape == (2, D) and np.isfinite(prediction.chunk).all()
    np.testing.assert_array_equal(prediction.tokens, policy.action_tokenizer.encode(prediction.chunk[:, 0]))


def test_an_untrained_vla_generates_invalid_sequences_that_are_repaired_and_counted(fitted, split_chunks, caplog):
    """A random model emits text ids and no </s>: generation stops at K·D + 1 tokens, the tokenizer drops the
    invalid ids and pads the coefficients, and the decoded chunks are plain (K, D) arrays."""
    tok = FastActionTokenizer(V, K, D, fitted.bpe, scale=10.0, fast_vocab_size=1024)
    model = _fast_model(tok, seed=2)
    batch = _fast_batch(model, tok, split_chunks[1][[0, 1]])
    ids, mask = _prompts(batch)
    with caplog.at_level(logging.WARNING):
        chunks = model.predict_normalized_chunk(ids, batch["pixel_values"], mask)
    assert chunks.shape == (2, K, D) and chunks.dtype == np.float32 and np.isfinite(chunks).all()
    counts = tok.repair_counts()
    assert counts["decoded"] == 2 and counts["repaired"] >= 2 and counts["dropped_ids"] == 2
    assert any("without </s>" in r.getMessage() for r in caplog.records)
    assert any("FAST: repaired" in r.getMessage() for r in caplog.records)
