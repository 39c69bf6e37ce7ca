"""Action tokenizers (DESIGN §4) and normalization (DESIGN §5): exact OpenVLA semantics, fitted schemes, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openvla.actions import (
    ActionTokenizer,
    NormalizationError,
    QuantileActionTokenizer,
    load_action_tokenizer,
    normalize,
    resolve_action_tokenizer,
    save_action_tokenizer,
    unnormalize,
)

V = 32000
HALF_BIN = 1.0 / 255.0  # half of 2 / 255


# --------------------------------------------------------------------------------------------------------------
# Uniform tokenizer (OpenVLA)
# --------------------------------------------------------------------------------------------------------------
def test_uniform_layout_matches_openvla():
    tok = ActionTokenizer(V)
    assert tok.bins.shape == (256,) and tok.bins[0] == -1.0 and tok.bins[-1] == 1.0
    assert tok.bin_centers.shape == (255,)
    np.testing.assert_allclose(tok.bin_centers[0], -1.0 + HALF_BIN)
    assert tok.action_token_begin_idx == 31743
    ids = tok.encode(np.linspace(-1, 1, 10001))
    assert ids.min() == V - 256 and ids.max() == V - 1
    assert tok.is_action_token(np.array([31743, 31744, 31999, 32000])).tolist() == [False, True, True, False]


def test_uniform_round_trip_error_is_at_most_half_a_bin():
    tok = ActionTokenizer(V)
    values = np.random.default_rng(0).uniform(-1, 1, size=(20000, 7))
    values = np.concatenate([values, tok.bins[None, :7], tok.bin_centers[None, :7]])
    decoded = tok.decode(tok.encode(values))
    assert decoded.dtype == np.float32 and decoded.shape == values.shape
    assert np.abs(decoded - values).max() <= HALF_BIN + 1e-6


def test_uniform_exact_edges_and_out_of_range_values():
    tok = ActionTokenizer(V)
    # np.digitize: bins[i-1] <= a < bins[i] → i; -1 → 1, 1.0 → 256 (the only value there), above/below clip first.
    values = np.array([-5.0, -1.0, tok.bins[1], np.nextafter(tok.bins[1], -2), 0.0, np.nextafter(1.0, 0), 1.0, 7.0])
    ids = tok.encode(values)
    assert ids.tolist() == [V - 1, V - 1, V - 2, V - 1, V - 128, V - 255, V - 256, V - 256]
    assert ids.dtype == np.int64
    decoded = tok.decode(ids)
    np.testing.assert_allclose(decoded[[0, 1, 3]], -1.0 + HALF_BIN, rtol=0, atol=1e-7)
    np.testing.assert_allclose(decoded[[5, 6, 7]], 1.0 - HALF_BIN, rtol=0, atol=1e-7)  # 1.0 joins the last bin
    assert abs(decoded[4]) < 1e-7


def test_uniform_decode_clips_ids_outside_the_action_range():
    tok = ActionTokenizer(V)
    decoded = tok.decode(np.array([V, V + 10, 0, V - 300]))  # d = 0, -10 → bin 0; d = 32000, 300 → last bin
    np.testing.assert_allclose(decoded, [tok.bin_centers[0]] * 2 + [tok.bin_centers[-1]] * 2, atol=1e-7)


def test_uniform_tokenizer_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_bins"):
        ActionTokenizer(V, n_bins=1)
    with pytest.raises(ValueError, match="vocab_size"):
        ActionTokenizer(100, n_bins=256)


# --------------------------------------------------------------------------------------------------------------
# Quantile tokenizer
# --------------------------------------------------------------------------------------------------------------
def _skewed(n: int, seed: int = 0) -> np.ndarray:
    """Most mass near 0 with long tails (like robot deltas), plus a binary gripper in [0, 1]."""
    rng = np.random.default_rng(seed)
    arm = np.clip(rng.laplace(0.0, 0.05, size=(n, 6)), -1, 1)
    gripper = rng.integers(0, 2, size=(n, 1)).astype(np.float64)
    return np.concatenate([arm, gripper], axis=1)


def test_quantile_same_id_layout_and_api():
    tok = QuantileActionTokenizer.fit(_skewed(5000), V)
    assert tok.bins.shape == (7, 256) and tok.bin_centers.shape == (7, 255)
    assert np.all(np.diff(tok.bins, axis=1) > 0)  # the uniform mix keeps every bin open
    assert np.all(tok.bins[:, 0] == -1) and np.all(tok.bins[:, -1] == 1)
    assert tok.action_token_begin_idx == 31743
    ids = tok.encode(np.array([[-3.0] * 7, [1.0] * 7]))
    assert ids.shape == (2, 7) and ids.dtype == np.int64
    assert ids[0].tolist() == [V - 1] * 7 and ids[1].tolist() == [V - 256] * 7
    chunk = _skewed(24, seed=1).reshape(2, 12, 7)  # any leading shape
    assert tok.decode(tok.encode(chunk)).shape == (2, 12, 7)
    flat = tok.encode(chunk[0]).reshape(-1)  # a flat run of whole actions
    np.testing.assert_array_equal(tok.decode(flat).reshape(12, 7), tok.decode(tok.encode(chunk[0])))
    with pytest.raises(ValueError, match="action_dim=7"):
        tok.encode(np.zeros((3, 6)))


def test_quantile_values_come_back_inside_their_own_bin():
    tok = QuantileActionTokenizer.fit(_skewed(5000), V, decode_mode="quantile")
    lower, upper = tok.bins[:, :-1], tok.bins[:, 1:]
    assert np.all((lower <= tok.bin_centers) & (tok.bin_centers <= upper))  # representatives inside their bins
    values = np.clip(_skewed(5000, seed=3) + np.random.default_rng(3).normal(0, 0.2, size=(5000, 7)), -1, 1)
    ids = tok.encode(values)
    index = tok._bin_index(ids)
    width = np.take_along_axis(np.diff(tok.bins, axis=1).T, index, axis=0)  # (N, 7) width of each value's bin
    assert np.all(np.abs(tok.decode(ids) - values) <= width + 1e-6)
    assert np.diff(tok.bins, axis=1).min() >= 0.1 * 2 / 255 - 1e-12  # the uniform mix keeps every bin open


def test_quantile_beats_uniform_on_skewed_data_in_and_out_of_sample():
    train, test = _skewed(20000, seed=0), _skewed(20000, seed=1)
    uniform = ActionTokenizer(V)
    errors = {}
    for mode in ("quantile", "mean"):
        tok = QuantileActionTokenizer.fit(train, V, decode_mode=mode)
        errors[mode] = np.abs(tok.decode(tok.encode(test)) - test).mean()
    errors["uniform"] = np.abs(uniform.decode(uniform.encode(test)) - test).mean()
    assert errors["quantile"] < 0.5 * errors["uniform"]
    assert errors["mean"] < errors["quantile"]
    tok = QuantileActionTokenizer.fit(train, V, decode_mode="mean")
    gripper = tok.decode(tok.encode(test))[:, 6]
    np.testing.assert_array_equal(gripper, test[:, 6])  # a binary dimension comes back exactly with bin means


def test_quantile_with_full_uniform_mix_is_openvla():
    tok = QuantileActionTokenizer.fit(_skewed(1000), V, uniform_mix=1.0, decode_mode="quantile")
    uniform = ActionTokenizer(V)
    values = np.random.default_rng(5).uniform(-1.2, 1.2, size=(3000, 7))
    np.testing.assert_array_equal(tok.encode(values), uniform.encode(values))
    np.testing.assert_array_equal(tok.decode(tok.encode(values)), uniform.decode(uniform.encode(values)))


def test_quantile_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        QuantileActionTokenizer.fit(np.zeros(10), V)
    with pytest.raises(ValueError, match="uniform_mix"):
        QuantileActionTokenizer.fit(np.zeros((10, 2)), V, uniform_mix=2.0)


# --------------------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["uniform", "quantile"])
def test_save_load_restores_the_exact_tokenizer(tmp_path, scheme):
    tok = ActionTokenizer(V) if scheme == "uniform" else QuantileActionTokenizer.fit(_skewed(3000), V)
    save_action_tokenizer(tok, tmp_path / "tok", extra={"datasets": ["x"]})
    meta = json.loads((tmp_path / "tok" / "action_tokenizer.json").read_text())
    assert meta["scheme"] == scheme and meta["vocab_size"] == V and meta["extra"] == {"datasets": ["x"]}
    back = load_action_tokenizer(tmp_path / "tok")
    assert type(back) is type(tok) and back.n_bins == 256
    np.testing.assert_array_equal(back.bins, tok.bins)
    np.testing.assert_array_equal(back.bin_centers, tok.bin_centers)
    values = _skewed(500, seed=9)
    np.testing.assert_array_equal(back.decode(back.encode(values)), tok.decode(tok.encode(values)))
    assert not list(tmp_path.glob(".tok*"))  # no temporary left behind by the atomic write


def test_resolve_uses_the_saved_tokenizer_or_uniform_and_checks_sizes(tmp_path):
    assert type(resolve_action_tokenizer(None, V)) is ActionTokenizer
    assert type(resolve_action_tokenizer(tmp_path / "absent", V)) is ActionTokenizer
    save_action_tokenizer(QuantileActionTokenizer.fit(_skewed(500), V), tmp_path / "tok")
    assert isinstance(resolve_action_tokenizer(tmp_path / "tok", V), QuantileActionTokenizer)
    with pytest.raises(ValueError, match="vocab_size=32000"):
        resolve_action_tokenizer(tmp_path / "tok", 32064)


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"action_tokenizer\.json"):
        load_action_tokenizer(tmp_path)


# --------------------------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------------------------
STATS = {
    "mean": [0.0, 1.0, 0.5, 0.0],
    "std": [1.0, 2.0, 0.5, 0.0],
    "min": [-2.0, -3.0, 0.0, 0.3],
    "max": [2.0, 5.0, 1.0, 0.3],  # dim 3 is constant (min == max): an unused dimension
    "q01": [-1.0, -1.0, 0.0, 0.3],
    "q99": [1.0, 3.0, 1.0, 0.3],
    "mask": [True, True, False, True],  # dim 2 plays the gripper: left unchanged
}


def test_bounds_q99_formula_mask_clip_and_unused_dims():
    x = np.array([[0.5, 2.0, 0.7, 0.3], [-3.0, 10.0, 1.0, 0.3]], dtype=np.float32)
    out = normalize(x, STATS)
    assert out.dtype == np.float32
    expected0 = 2 * (0.5 + 1.0) / (2.0 + 1e-8) - 1
    expected1 = 2 * (2.0 + 1.0) / (4.0 + 1e-8) - 1
    np.testing.assert_allclose(out[0], [expected0, expected1, 0.7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [-1.0, 1.0, 1.0, 0.0])  # clipped; gripper unchanged; constant dim → 0


def test_bounds_and_normal_kinds():
    x = np.array([1.0, 1.0, 0.25, 0.3])
    np.testing.assert_allclose(normalize(x, STATS, "bounds"), [2 * 3 / (4 + 1e-8) - 1, 2 * 4 / (8 + 1e-8) - 1, 0.25, 0])
    # normal: no clipping, and OpenVLA applies no min == max rule there (x − mean = 0.3 here, std 0 → huge).
    out = normalize(x, STATS, "normal")
    np.testing.assert_allclose(out[:3], [1.0 / (1 + 1e-8), 0.0, 0.25])
    assert out[3] == pytest.approx(0.3 / 1e-8)


def test_mask_defaults_to_all_true():
    stats = {k: v for k, v in STATS.items() if k != "mask"}
    out = normalize(np.array([0.0, 1.0, 0.5, 0.3]), stats)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("kind", ["bounds_q99", "bounds", "normal"])
def test_unnormalize_inverts_normalize_inside_the_bounds(kind):
    stats = {k: (v[:3] if isinstance(v, list) else v) for k, v in STATS.items()}  # drop the constant dim
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(-1, 1, 100), rng.uniform(-1, 3, 100), rng.uniform(0, 1, 100)], axis=1)
    back = unnormalize(normalize(x, stats, kind), stats, kind)
    np.testing.assert_allclose(back, x, atol=1e-6)
    assert back.dtype == np.float64


def test_unnormalize_openvla_formula_and_unknown_kind():
    np.testing.assert_allclose(unnormalize(np.array([1.0, -1.0, 0.4, 0.0]), STATS), [1.0, -1.0, 0.4, 0.3])
    with pytest.raises(NormalizationError, match="unknown normalization kind 'q99'"):
        normalize(np.zeros(4), STATS, "q99")
    with pytest.raises(NormalizationError, match="'q01'"):
        normalize(np.zeros(4), {"q99": [1] * 4, "min": [0] * 4, "max": [1] * 4})
    with pytest.raises(NormalizationError, match=r"expected \(3,\)"):
        normalize(np.zeros(3), STATS)
