"""The `bins` stage (DESIGN §4): fit the action tokenizer on a dataset and report its reconstruction error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from openvla.actions import QuantileActionTokenizer, load_action_tokenizer
from openvla.actions import fit as fit_module
from openvla.actions.fit import effective_bins, fit_bins, measure_tokenizer
from openvla.config import BinsConfig

V = 32000


def _stats(raw: np.ndarray, mask: list[bool]) -> dict:
    return {
        "mean": raw.mean(0).tolist(),
        "std": raw.std(0).tolist(),
        "min": raw.min(0).tolist(),
        "max": raw.max(0).tolist(),
        "q01": np.quantile(raw, 0.01, axis=0).tolist(),
        "q99": np.quantile(raw, 0.99, axis=0).tolist(),
        "mask": mask,
    }


def _two_datasets(seed: int = 0):
    """Two small 'robot datasets' (20 episodes × 50 steps) with different scales, skewed deltas, binary gripper."""
    rng = np.random.default_rng(seed)
    raws, stats, dataset_index, episode_index = [], [], [], []
    for g, scale in enumerate((0.01, 0.5)):
        raw = np.concatenate([rng.laplace(0, scale, size=(1000, 6)), rng.integers(0, 2, size=(1000, 1))], axis=1)
        raws.append(raw)
        stats.append(_stats(raw, [True] * 6 + [False]))
        dataset_index.append(np.full(1000, g))
        episode_index.append(np.repeat(np.arange(20), 50))
    return np.concatenate(raws), stats, np.concatenate(dataset_index), np.concatenate(episode_index)


def test_quantile_scheme_beats_uniform_and_both_report_the_same_keys():
    raw, stats, dataset_index, episode_index = _two_datasets()
    results = {}
    for scheme in ("uniform", "quantile"):
        cfg = BinsConfig(scheme=scheme)
        _, summary, arrays = measure_tokenizer(cfg, V, raw, stats, dataset_index, episode_index)
        results[scheme] = summary
        assert arrays["usage"].shape == (7, 255) and arrays["usage"].sum() == 7 * len(raw)
    uniform, quantile = results["uniform"], results["quantile"]
    assert uniform.keys() == quantile.keys()
    assert uniform["per_dim"].keys() == quantile["per_dim"].keys() == {str(d) for d in range(7)}
    assert uniform["num_actions"] == 2000 and uniform["num_episodes"] == 40
    assert uniform["err_norm_mean"] == uniform["uniform_err_norm_mean"]
    assert quantile["uniform_err_norm_mean"] == uniform["err_norm_mean"]
    assert uniform["err_norm_max"] <= 1 / 255 + 1e-6  # everything was normalized into [−1, 1] or is the gripper
    assert quantile["err_norm_mean"] < 0.8 * uniform["err_norm_mean"]  # Laplace deltas: ~30% less error
    assert quantile["heldout_err_norm_mean"] < uniform["heldout_err_norm_mean"]
    assert quantile["err_raw_mean"] < uniform["err_raw_mean"]
    assert quantile["per_dim"]["6"]["err_norm_mean"] == 0.0  # binary gripper: bin means are exact
    assert quantile["effective_bins_mean"] > uniform["effective_bins_mean"]


def test_raw_error_follows_each_datasets_own_statistics():
    raw, stats, dataset_index, episode_index = _two_datasets()
    _, summary, _ = measure_tokenizer(BinsConfig(), V, raw, stats, dataset_index, episode_index)
    # Inside [q01, q99] a uniform bin is (q99 − q01)/255 wide in dataset units; outside, the value was clipped.
    width = np.array([np.subtract(s["q99"], s["q01"]) / 255 for s in stats])  # (2, 7)
    inside = np.all(
        (raw >= np.array([s["q01"] for s in stats])[dataset_index])
        & (raw <= np.array([s["q99"] for s in stats])[dataset_index]),
        axis=1,
    )
    assert inside.mean() > 0.8
    assert summary["err_raw_mean"] < width[:, :6].mean()


def test_effective_bins_counts_equally_used_bins():
    counts = np.array([[5, 5, 5, 5, 0], [20, 0, 0, 0, 0]])
    np.testing.assert_allclose(effective_bins(counts), [4.0, 1.0])


def _write_stage_inputs(tmp_path: Path, scheme: str, mixture: str = "bridge") -> Path:
    params = {"data": {"mixture": mixture}, "model": {"tokenizer": "mistral-v1"}, "bins": {"scheme": scheme}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_stage_writes_tokenizer_metrics_and_plots(tmp_path, monkeypatch):
    """The stage end to end with the dataset read replaced by synthetic actions (no TensorFlow needed)."""
    raw, stats, dataset_index, episode_index = _two_datasets(seed=1)
    names = ["set_a", "set_b"]

    def fake_read(data_dir, mixture, max_samples):
        assert mixture == "bridge" and max_samples == 200_000
        return names, raw.astype(np.float32), dataset_index, episode_index

    monkeypatch.setattr(fit_module, "read_training_actions", fake_read)
    statistics = tmp_path / "dataset_statistics.json"
    statistics.write_text(json.dumps({name: {"action": s} for name, s in zip(names, stats, strict=True)}))
    from stages.bins import main

    summaries = {}
    for scheme in ("uniform", "quantile"):
        monkeypatch.setenv("OPENVLA_TRACKING", "off" if scheme == "uniform" else "on")  # MLflow once is enough
        out = tmp_path / scheme
        main(
            data_dir=tmp_path / "rlds",
            statistics=statistics,
            out_dir=out / "tokenizer",
            metrics=out / "bins.json",
            plots_dir=out / "plots",
            params=_write_stage_inputs(tmp_path, scheme),
        )
        summaries[scheme] = json.loads((out / "bins.json").read_text())
        tok = load_action_tokenizer(out / "tokenizer")
        assert tok.vocab_size == V and tok.n_bins == 256
        meta = json.loads((out / "tokenizer" / "action_tokenizer.json").read_text())
        assert meta["extra"]["datasets"] == names and meta["extra"]["normalization"] == "bounds_q99"
        assert sorted(p.name for p in (out / "plots").iterdir()) == ["edges.csv", "errors.csv", "usage.csv"]
        usage = np.loadtxt(out / "plots" / "usage.csv", delimiter=",", skiprows=1)
        assert usage.shape == (255, 8) and usage[:, 1:].sum() == 7 * len(raw)
    assert isinstance(load_action_tokenizer(tmp_path / "quantile" / "tokenizer"), QuantileActionTokenizer)
    assert summaries["uniform"].keys() == summaries["quantile"].keys()  # dvc exp show lines the schemes up
    assert summaries["quantile"]["err_norm_mean"] < summaries["uniform"]["err_norm_mean"]

    import mlflow

    runs = mlflow.search_runs(experiment_names=["openvla-embedded"], output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["stage"] == "bins"
    assert runs[0].data.params["scheme"] == "quantile" and runs[0].data.params["data.mixture"] == "bridge"
    assert runs[0].data.metrics["err_norm_mean"] == pytest.approx(summaries["quantile"]["err_norm_mean"])
    assert "dim6.err_norm_mean" in runs[0].data.metrics


def test_missing_statistics_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(
        fit_module,
        "read_training_actions",
        lambda *a: (["other"], np.zeros((3, 7)), np.zeros(3, int), np.zeros(3, int)),
    )
    statistics = tmp_path / "stats.json"
    statistics.write_text(json.dumps({"bridge_orig": {}}))
    with pytest.raises(KeyError, match=r"no statistics for \['other'\]"):
        fit_bins(
            BinsConfig(),
            data_dir=tmp_path,
            statistics_path=statistics,
            mixture="x",
            vocab_size=V,
            out_dir=tmp_path / "t",
            plots_dir=tmp_path / "p",
        )
    with pytest.raises(FileNotFoundError, match="run the `stats` stage"):
        fit_bins(
            BinsConfig(),
            data_dir=tmp_path,
            statistics_path=tmp_path / "nope.json",
            mixture="x",
            vocab_size=V,
            out_dir=tmp_path / "t",
            plots_dir=tmp_path / "p",
        )


def test_fit_on_real_bridge_rlds(tmp_path, bridge_data_dir):
    """Reads the real 25-episode BridgeData RLDS through openvla.data (standardized as bridge_orig) and fits."""
    from openvla.data import compute_dataset_statistics

    statistics = tmp_path / "dataset_statistics.json"
    statistics.write_text(json.dumps({"bridge_orig": compute_dataset_statistics(bridge_data_dir, "bridge_orig")}))
    summary = fit_bins(
        BinsConfig(scheme="quantile"),
        data_dir=bridge_data_dir,
        statistics_path=statistics,
        mixture="bridge",
        vocab_size=V,
        out_dir=tmp_path / "tokenizer",
        plots_dir=tmp_path / "plots",
    )
    assert summary["num_actions"] > 0 and summary["action_dim"] == 7
    assert summary["err_norm_mean"] < summary["uniform_err_norm_mean"]
    assert summary["per_dim"]["6"]["err_norm_mean"] == 0.0  # the binarized gripper
    tok = load_action_tokenizer(tmp_path / "tokenizer")
    assert tok.action_dim == 7


def _smooth_two_datasets():
    """Two datasets of smooth episodes (different scales) as standardized actions, with their statistics."""
    from test_fast import smooth_episodes

    raws, stats, dataset_index, episode_index = [], [], [], []
    for g, scale in enumerate((0.01, 0.5)):
        normalized, episodes = smooth_episodes(n_episodes=20, length=50, seed=g)
        raw = np.concatenate([normalized[:, :6] * scale, normalized[:, 6:]], axis=1)
        raws.append(raw)
        stats.append(_stats(raw, [True] * 6 + [False]))
        dataset_index.append(np.full(len(raw), g))
        episode_index.append(episodes)
    return np.concatenate(raws), stats, np.concatenate(dataset_index), np.concatenate(episode_index)


def test_fast_scheme_reports_tokens_per_chunk_and_errors_next_to_uniform():
    from openvla.actions import FastActionTokenizer

    raw, stats, dataset_index, episode_index = _smooth_two_datasets()
    _, uniform, _ = measure_tokenizer(BinsConfig(), V, raw, stats, dataset_index, episode_index)
    tok, fast, arrays = measure_tokenizer(BinsConfig(scheme="fast"), V, raw, stats, dataset_index, episode_index, 8)
    assert isinstance(tok, FastActionTokenizer) and tok.chunk == 8 and tok.action_dim == 7
    assert set(uniform) <= set(fast)  # the uniform scheme's keys are all there (dvc exp show lines them up)
    assert fast["effective_bins_mean"] is None and fast["bins_used_mean"] is None
    assert fast["num_actions"] == fast["num_chunks"] == 2000 and fast["num_episodes"] == 40
    assert fast["uniform_tokens_per_chunk"] == 56 and fast["chunk"] == 8
    assert 1 <= fast["tokens_per_chunk_mean"] < 28 and fast["tokens_per_chunk_max"] <= 56
    assert fast["compression_ratio"] == pytest.approx(56 / fast["tokens_per_chunk_mean"])
    assert fast["heldout_compression_ratio"] > 2 and fast["heldout_tokens_per_chunk_max"] <= 56
    assert fast["rounding_bound"] == pytest.approx(0.5 * np.sqrt(8) / 10)
    assert fast["err_norm_max"] <= fast["rounding_bound"] + 1e-6
    assert fast["heldout_err_norm_max"] <= fast["rounding_bound"] + 1e-6
    # uniform bins (1/255 at most) are finer per value than FAST's rounding at scale 10 on these chunks
    assert fast["uniform_err_norm_mean"] < fast["err_norm_mean"] < 0.03
    assert fast["uniform_heldout_err_norm_mean"] < fast["heldout_err_norm_mean"] < 0.03
    # dataset units follow each dataset's own statistics: the small-scale dataset's errors are ~50× smaller
    assert 0 < fast["err_raw_mean"] < fast["err_norm_mean"]
    assert arrays["lengths"].sum() == arrays["token_counts"].sum()
    assert fast["tokens_used"] <= fast["fast_tokens_learned"] <= 1024
    finer = BinsConfig(scheme="fast", fast_scale=40.0)
    _, fine, _ = measure_tokenizer(finer, V, raw, stats, dataset_index, episode_index, 8)
    assert (
        fine["err_norm_mean"] < fast["err_norm_mean"] / 3
        and fine["tokens_per_chunk_mean"] > fast["tokens_per_chunk_mean"]
    )


def test_stage_fits_fast_with_the_chunk_length(tmp_path, monkeypatch):
    raw, stats, dataset_index, episode_index = _smooth_two_datasets()
    names = ["set_a", "set_b"]
    monkeypatch.setattr(fit_module, "read_training_actions", lambda *a: (names, raw, dataset_index, episode_index))
    monkeypatch.setenv("OPENVLA_TRACKING", "off")
    statistics = tmp_path / "dataset_statistics.json"
    statistics.write_text(json.dumps({name: {"action": s} for name, s in zip(names, stats, strict=True)}))
    kwargs = dict(data_dir=tmp_path, statistics_path=statistics, mixture="x", vocab_size=V, out_dir=tmp_path / "tok")
    with pytest.raises(ValueError, match=r"set bins\.fast_chunk"):
        fit_bins(BinsConfig(scheme="fast"), plots_dir=tmp_path / "plots", **kwargs)
    summary = fit_bins(BinsConfig(scheme="fast"), plots_dir=tmp_path / "plots", chunk=8, **kwargs)
    assert summary["chunk"] == 8
    tok = load_action_tokenizer(tmp_path / "tok")
    assert tok.scheme == "fast" and tok.chunk == 8 and tok.bpe_vocab_size == summary["fast_tokens_learned"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "errors.csv", "token_usage.csv", "tokens_per_chunk.csv",
    ]  # fmt: skip
    lengths = np.loadtxt(tmp_path / "plots" / "tokens_per_chunk.csv", delimiter=",", skiprows=1)
    assert lengths[:, 1].sum() == 2000
    # bins.fast_chunk wins over the data's chunk
    summary = fit_bins(BinsConfig(scheme="fast", fast_chunk=4), plots_dir=tmp_path / "p4", chunk=8, **kwargs)
    assert summary["chunk"] == 4 and summary["uniform_tokens_per_chunk"] == 28
