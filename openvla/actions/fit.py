"""Fit the action tokenizer on a dataset and measure what discretization costs (the ``bins`` stage, DESIGN §4).

Flow: read the training split's standardized actions of every dataset in the mixture (``openvla.data``), normalize
each with its own statistics (the same formula as training), fit the configured scheme (``uniform`` = OpenVLA's
fixed bins, nothing to fit; ``quantile`` = per-dimension quantile edges), save it with ``save_action_tokenizer``,
and report:

* reconstruction error ``|decode(encode(a)) − a|`` per dimension and overall, mean and max, in normalized units
  and in dataset units (after ``unnormalize``; this includes the clipping of values outside [q01, q99], which a
  tokenized policy cannot reproduce either);
* the same on held-out episodes (a quantile tokenizer refitted without them), so fitting to the data is not
  rewarded for memorizing it;
* the uniform scheme's error on the same data, so one run shows the gain of any scheme;
* bin usage: per-dimension histograms over the bins (plots) and the effective number of bins used
  (exp of the usage entropy; 255 would be perfectly even).

Metric keys do not depend on the scheme, so ``dvc exp run -S bins.scheme=quantile`` lines up in ``dvc exp show``.

``fast`` (DCT + BPE over chunks, ``openvla.actions.fast``) is fitted on every step's chunk of K actions (the step and
the K − 1 next ones, clamped at the episode end, as training builds them). Its errors are over all K·D values of
those chunks, next to the uniform scheme's on the same values, plus what FAST is for: tokens per chunk (mean,
max), the compression ratio K·D / mean tokens, in-sample and on held-out episodes (a tokenizer refitted without
them), and the rounding bound 0.5·√K / scale. The bin-usage keys (``effective_bins_mean``, ``bins_used_mean``) are
null for it; ``effective_tokens`` is the analogue over its BPE tokens.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openvla.actions.fast import FastActionTokenizer, chunks_from_episodes, max_abs_error, token_lengths
from openvla.actions.normalization import normalize, unnormalize
from openvla.actions.tokenizer import ActionTokenizer, QuantileActionTokenizer, save_action_tokenizer
from openvla.io import atomic_write_text

log = logging.getLogger(__name__)


def build_tokenizer(
    scheme: str,
    vocab_size: int,
    n_bins: int,
    normalized_actions: np.ndarray | None = None,
    *,
    uniform_mix: float = 0.1,
    decode_mode: str = "mean",
    fast_scale: float = 10.0,
    fast_vocab_size: int = 1024,
) -> ActionTokenizer:
    """The tokenizer of ``scheme`` (``uniform`` ignores the data; ``quantile`` is fitted on it, (N, D); ``fast`` on
    normalized chunks (N, K, D))."""
    if scheme == "uniform":
        return ActionTokenizer(vocab_size, n_bins)
    if scheme == "quantile":
        if normalized_actions is None or len(normalized_actions) == 0:
            raise ValueError("bins.scheme=quantile needs normalized training actions to fit on, got none")
        return QuantileActionTokenizer.fit(
            normalized_actions, vocab_size, n_bins, uniform_mix=uniform_mix, decode_mode=decode_mode
        )
    if scheme == "fast":
        if normalized_actions is None or np.ndim(normalized_actions) != 3 or len(normalized_actions) == 0:
            raise ValueError("bins.scheme=fast needs normalized training chunks (N, K, D) to fit on")
        return FastActionTokenizer.fit(
            normalized_actions, vocab_size, scale=fast_scale, fast_vocab_size=fast_vocab_size, n_bins=n_bins
        )
    raise ValueError(f"bins.scheme: unknown scheme {scheme!r}; expected 'uniform', 'quantile' or 'fast'")


def bin_usage(tokenizer: ActionTokenizer, normalized_actions: np.ndarray) -> np.ndarray:
    """Counts per (dimension, bin), shape (D, n_bins − 1): how often each decode value is used."""
    index = tokenizer._bin_index(tokenizer.encode(normalized_actions))  # (N, D)
    n_intervals = tokenizer.n_bins - 1
    return np.stack([np.bincount(index[:, d], minlength=n_intervals) for d in range(index.shape[1])])


def effective_bins(counts: np.ndarray) -> np.ndarray:
    """exp(entropy) of each row of ``counts`` (the number of equally used bins with the same entropy)."""
    total = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros(counts.shape, dtype=np.float64), where=total > 0)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    return np.exp(entropy)


def reconstruction_errors(
    tokenizer: ActionTokenizer,
    normalized: np.ndarray,
    raw: np.ndarray | None = None,
    stats: Sequence[Mapping[str, Any]] | None = None,
    groups: np.ndarray | None = None,
    kind: str = "bounds_q99",
) -> dict[str, np.ndarray]:
    """Per-dimension mean/max |decode(encode(x)) − x| in normalized units and, with ``raw``, in dataset units.

    ``groups`` (N,) says which entry of ``stats`` un-normalizes each row (one per dataset of a mixture).
    """
    decoded = tokenizer.decode(tokenizer.encode(normalized)).astype(np.float64)
    err = np.abs(decoded - normalized)
    out = {"err_norm_mean": err.mean(axis=0), "err_norm_max": err.max(axis=0)}
    if raw is not None and stats is not None:
        groups = np.zeros(len(raw), dtype=np.int64) if groups is None else groups
        back = np.empty_like(decoded)
        for g, entry in enumerate(stats):
            rows = groups == g
            back[rows] = unnormalize(decoded[rows], entry, kind)
        raw_err = np.abs(back - raw)
        out.update(err_raw_mean=raw_err.mean(axis=0), err_raw_max=raw_err.max(axis=0))
    return out


def _heldout_split(episode_groups: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask over rows: True for the rows of every k-th episode (k = round(1 / fraction))."""
    episodes = np.unique(episode_groups)
    if fraction <= 0 or len(episodes) < 2:
        return np.zeros(len(episode_groups), dtype=bool)
    every = max(2, round(1.0 / fraction))
    held = episodes[every - 1 :: every] if len(episodes) >= every else episodes[-1:]
    return np.isin(episode_groups, held)


def error_summary(errors: Any, uniform_errors: Any, heldout: dict[str, float]) -> dict[str, float]:
    """The reconstruction-error keys of ``metrics/bins.json``, the same for every scheme (uniform's next to them)."""
    return {
        "err_norm_mean": float(errors["err_norm_mean"].mean()),
        "err_norm_max": float(errors["err_norm_max"].max()),
        "err_raw_mean": float(errors["err_raw_mean"].mean()),
        "err_raw_max": float(errors["err_raw_max"].max()),
        **heldout,
        "uniform_err_norm_mean": float(uniform_errors["err_norm_mean"].mean()),
        "uniform_err_raw_mean": float(uniform_errors["err_raw_mean"].mean()),
    }


def measure_tokenizer(
    cfg: Any,
    vocab_size: int,
    raw: np.ndarray,
    stats: Sequence[Mapping[str, Any]],
    dataset_index: np.ndarray,
    episode_index: np.ndarray,
    chunk: int | None = None,
) -> tuple[ActionTokenizer, dict[str, Any], dict[str, np.ndarray]]:
    """Fit ``cfg.scheme`` on all rows and measure it (in-sample, held-out, against uniform).

    ``raw`` (N, D) standardized actions; ``stats[g]`` the ``"action"`` statistics of dataset g; ``dataset_index``
    and ``episode_index`` (N,) say where each row comes from (rows of an episode contiguous and in order). Returns
    the tokenizer, the summary metrics (flat scalars and a ``per_dim`` mapping) and per-dimension arrays for plots.
    ``chunk``: K of the ``fast`` scheme when ``cfg.fast_chunk`` is 0 (the stage passes ``data.chunk``).
    """
    if raw.ndim != 2 or len(raw) == 0:
        raise ValueError(f"expected standardized actions of shape (N ≥ 1, D), got {raw.shape}")
    normalized = _normalized(cfg, raw, stats, dataset_index)
    if cfg.scheme == "fast":
        k = cfg.fast_chunk or chunk
        if not k:
            raise ValueError("bins.scheme=fast needs the chunk length K: set bins.fast_chunk (or pass data.chunk)")
        return _measure_fast(cfg, vocab_size, raw, normalized, stats, dataset_index, episode_index, int(k))
    fit_kwargs = {"uniform_mix": cfg.uniform_mix, "decode_mode": cfg.decode}
    tokenizer = build_tokenizer(cfg.scheme, vocab_size, cfg.n_bins, normalized, **fit_kwargs)
    uniform = ActionTokenizer(vocab_size, cfg.n_bins)
    args = (normalized, raw.astype(np.float64), stats, dataset_index, cfg.normalization)
    errors = reconstruction_errors(tokenizer, *args)
    uniform_errors = reconstruction_errors(uniform, *args)
    usage = bin_usage(tokenizer, normalized)
    eff = effective_bins(usage)

    held = _heldout_split(episode_index * len(stats) + dataset_index, cfg.heldout_fraction)
    heldout: dict[str, float | None] = {"heldout_err_norm_mean": None, "heldout_err_raw_mean": None}
    if held.any() and (~held).any():
        fitted = build_tokenizer(cfg.scheme, vocab_size, cfg.n_bins, normalized[~held], **fit_kwargs)
        sub = reconstruction_errors(
            fitted, normalized[held], raw[held].astype(np.float64), stats, dataset_index[held], cfg.normalization
        )
        # Means over the held-out rows (per-dimension means are over the same rows, so average them).
        heldout = {
            "heldout_err_norm_mean": float(sub["err_norm_mean"].mean()),
            "heldout_err_raw_mean": float(sub["err_raw_mean"].mean()),
        }

    summary: dict[str, Any] = {
        "num_actions": len(raw),
        "num_episodes": len(np.unique(episode_index * len(stats) + dataset_index)),
        "action_dim": raw.shape[1],
        **error_summary(errors, uniform_errors, heldout),
        "effective_bins_mean": float(eff.mean()),
        "bins_used_mean": float((usage > 0).sum(axis=1).mean()),
        "per_dim": {
            str(d): {
                "err_norm_mean": float(errors["err_norm_mean"][d]),
                "err_raw_mean": float(errors["err_raw_mean"][d]),
            }
            for d in range(raw.shape[1])
        },
    }
    arrays = {**errors, "uniform_err_norm_mean": uniform_errors["err_norm_mean"], "effective_bins": eff}
    arrays["usage"] = usage
    return tokenizer, summary, arrays


def _normalized(cfg: Any, raw: np.ndarray, stats: Sequence[Mapping[str, Any]], dataset_index: np.ndarray) -> np.ndarray:
    """Every row normalized with its own dataset's statistics (the formula training uses)."""
    normalized = np.empty(raw.shape, dtype=np.float64)
    for g, entry in enumerate(stats):
        rows = dataset_index == g
        normalized[rows] = normalize(raw[rows].astype(np.float64), entry, cfg.normalization)
    return normalized


def _measure_fast(
    cfg: Any,
    vocab_size: int,
    raw: np.ndarray,
    normalized: np.ndarray,
    stats: Sequence[Mapping[str, Any]],
    dataset_index: np.ndarray,
    episode_index: np.ndarray,
    chunk: int,
) -> tuple[ActionTokenizer, dict[str, Any], dict[str, np.ndarray]]:
    """``measure_tokenizer`` for FAST: fit on every step's chunk, measure the chunks' values and token counts."""
    episodes = episode_index * len(stats) + dataset_index
    chunks, _ = chunks_from_episodes(normalized, episodes, chunk)  # (N, K, D), one per step
    raw_chunks, _ = chunks_from_episodes(raw.astype(np.float64), episodes, chunk)
    groups = np.repeat(dataset_index, chunk)  # the dataset of every value row of the flattened chunks
    dim = raw.shape[1]
    fast_kwargs = {"fast_scale": cfg.fast_scale, "fast_vocab_size": cfg.fast_vocab_size}
    tokenizer = build_tokenizer("fast", vocab_size, cfg.n_bins, chunks, **fast_kwargs)
    uniform = ActionTokenizer(vocab_size, cfg.n_bins)

    def measure(tok: FastActionTokenizer, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        sequences = tok.encode_chunks(chunks[rows])
        decoded = tok.decode_chunks(sequences).astype(np.float64).reshape(-1, dim)
        flat, flat_raw = chunks[rows].reshape(-1, dim), raw_chunks[rows].reshape(-1, dim)
        flat_groups = np.repeat(dataset_index[rows], chunk)
        errors = _decoded_errors(decoded, flat, flat_raw, stats, flat_groups, cfg.normalization)
        ids = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        return errors, token_lengths(sequences), ids

    everything = np.ones(len(chunks), dtype=bool)
    errors, lengths, ids = measure(tokenizer, everything)
    flat_args = (chunks.reshape(-1, dim), raw_chunks.reshape(-1, dim), stats, groups, cfg.normalization)
    uniform_errors = reconstruction_errors(uniform, *flat_args)
    counts = np.bincount(vocab_size - 1 - ids, minlength=tokenizer.bpe_vocab_size)[None]
    values_per_chunk = chunk * dim

    held = _heldout_split(episodes, cfg.heldout_fraction)
    heldout: dict[str, float | None] = dict.fromkeys(
        ("heldout_err_norm_mean", "heldout_err_norm_max", "heldout_err_raw_mean", "uniform_heldout_err_norm_mean",
         "uniform_heldout_err_raw_mean", "heldout_tokens_per_chunk_mean", "heldout_tokens_per_chunk_max",
         "heldout_compression_ratio")
    )  # fmt: skip
    if held.any() and (~held).any():
        refitted = build_tokenizer("fast", vocab_size, cfg.n_bins, chunks[~held], **fast_kwargs)
        sub, sub_lengths, _ = measure(refitted, held)
        sub_uniform = reconstruction_errors(
            uniform, chunks[held].reshape(-1, dim), raw_chunks[held].reshape(-1, dim), stats,
            np.repeat(dataset_index[held], chunk), cfg.normalization,
        )  # fmt: skip
        heldout = {
            "heldout_err_norm_mean": float(sub["err_norm_mean"].mean()),
            "heldout_err_norm_max": float(sub["err_norm_max"].max()),
            "heldout_err_raw_mean": float(sub["err_raw_mean"].mean()),
            "uniform_heldout_err_norm_mean": float(sub_uniform["err_norm_mean"].mean()),
            "uniform_heldout_err_raw_mean": float(sub_uniform["err_raw_mean"].mean()),
            "heldout_tokens_per_chunk_mean": float(sub_lengths.mean()),
            "heldout_tokens_per_chunk_max": int(sub_lengths.max()),
            "heldout_compression_ratio": float(values_per_chunk / sub_lengths.mean()),
        }

    summary: dict[str, Any] = {
        "num_actions": len(raw),
        "num_episodes": len(np.unique(episodes)),
        "action_dim": dim,
        **error_summary(errors, uniform_errors, heldout),
        "effective_bins_mean": None,
        "bins_used_mean": None,
        "chunk": chunk,
        "num_chunks": len(chunks),
        "fast_scale": cfg.fast_scale,
        "fast_vocab_size": cfg.fast_vocab_size,
        "fast_tokens_learned": tokenizer.bpe_vocab_size,
        "rounding_bound": max_abs_error(chunk, cfg.fast_scale),
        "tokens_per_chunk_mean": float(lengths.mean()),
        "tokens_per_chunk_max": int(lengths.max()),
        "uniform_tokens_per_chunk": values_per_chunk,
        "compression_ratio": float(values_per_chunk / lengths.mean()),
        "effective_tokens": float(effective_bins(counts)[0]),
        "tokens_used": int((counts > 0).sum()),
        "per_dim": {
            str(d): {
                "err_norm_mean": float(errors["err_norm_mean"][d]),
                "err_raw_mean": float(errors["err_raw_mean"][d]),
            }
            for d in range(dim)
        },
    }
    arrays = {**errors, "uniform_err_norm_mean": uniform_errors["err_norm_mean"], "lengths": lengths}
    arrays["token_counts"] = counts[0]
    return tokenizer, summary, arrays


def _decoded_errors(
    decoded: np.ndarray,
    normalized: np.ndarray,
    raw: np.ndarray,
    stats: Sequence[Mapping[str, Any]],
    groups: np.ndarray,
    kind: str,
) -> dict[str, np.ndarray]:
    """``reconstruction_errors`` for values already decoded (FAST decodes whole chunks, not single values)."""
    err = np.abs(decoded - normalized)
    back = np.empty_like(decoded)
    for g, entry in enumerate(stats):
        rows = groups == g
        back[rows] = unnormalize(decoded[rows], entry, kind)
    raw_err = np.abs(back - raw)
    return {
        "err_norm_mean": err.mean(axis=0),
        "err_norm_max": err.max(axis=0),
        "err_raw_mean": raw_err.mean(axis=0),
        "err_raw_max": raw_err.max(axis=0),
    }


def flat_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``summary`` with ``per_dim`` flattened to ``dim<d>/<key>`` (for MLflow)."""
    flat = {k: v for k, v in summary.items() if k != "per_dim" and v is not None}
    for d, values in summary.get("per_dim", {}).items():
        for key, value in values.items():
            flat[f"dim{d}/{key}"] = value
    return flat


def write_plots(plots_dir: Path, tokenizer: ActionTokenizer, arrays: Mapping[str, np.ndarray]) -> list[Path]:
    """CSV files for ``dvc plots show``: bin usage per dimension, per-dimension errors, and the bin edges."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    if "lengths" in arrays:
        return _write_fast_plots(plots_dir, arrays)
    usage = arrays["usage"]  # (D, n_bins - 1)
    dims = range(usage.shape[0])
    edges = tokenizer.bins if tokenizer.bins.ndim == 2 else np.tile(tokenizer.bins, (usage.shape[0], 1))

    def table(name: str, header: list[str], rows: list[list[Any]]) -> Path:
        path = plots_dir / name
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write_text(path, buffer.getvalue())
        return path

    return [
        table(
            "usage.csv",
            ["bin", *(f"dim{d}" for d in dims)],
            [[b, *usage[:, b].tolist()] for b in range(usage.shape[1])],
        ),
        table(
            "errors.csv",
            [
                "dim",
                "err_norm_mean",
                "err_norm_max",
                "err_raw_mean",
                "err_raw_max",
                "uniform_err_norm_mean",
                "effective_bins",
            ],
            [
                [
                    d,
                    *(float(arrays[k][d]) for k in ("err_norm_mean", "err_norm_max", "err_raw_mean", "err_raw_max")),
                    float(arrays["uniform_err_norm_mean"][d]),
                    float(arrays["effective_bins"][d]),
                ]
                for d in dims
            ],
        ),
        table(
            "edges.csv",
            ["edge", *(f"dim{d}" for d in dims)],
            [[i, *edges[:, i].tolist()] for i in range(edges.shape[1])],
        ),
    ]


def _csv_table(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
    return path


def _write_fast_plots(plots_dir: Path, arrays: Mapping[str, np.ndarray]) -> list[Path]:
    """FAST: per-dimension errors (as the other schemes), tokens-per-chunk histogram, BPE token usage by rank."""
    keys = ("err_norm_mean", "err_norm_max", "err_raw_mean", "err_raw_max", "uniform_err_norm_mean")
    lengths = np.bincount(arrays["lengths"])
    usage = np.sort(arrays["token_counts"])[::-1]
    return [
        _csv_table(
            plots_dir / "errors.csv",
            ["dim", *keys],
            [[d, *(float(arrays[k][d]) for k in keys)] for d in range(len(arrays["err_norm_mean"]))],
        ),
        _csv_table(
            plots_dir / "tokens_per_chunk.csv",
            ["tokens", "chunks"],
            [[n, int(c)] for n, c in enumerate(lengths) if n > 0],
        ),
        _csv_table(plots_dir / "token_usage.csv", ["rank", "count"], [[r, int(c)] for r, c in enumerate(usage)]),
    ]


def read_training_actions(
    data_dir: str | Path, mixture: str, max_samples: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Standardized actions of the training split of every dataset in ``mixture`` (at most ``max_samples`` each,
    whole episodes in file order). Returns (dataset names, actions (N, D), dataset index (N,), episode index (N,)).
    """
    from openvla.data.loader import standardized_trajectories
    from openvla.data.registry import get_mixture

    names = [name for name, _ in get_mixture(mixture)]
    chunks, dataset_index, episode_index = [], [], []
    for g, name in enumerate(names):
        trajectories = standardized_trajectories(data_dir, name, split="train", train=True, shuffle=False, cameras=())
        count = 0
        for e, traj in enumerate(trajectories.traj_map(lambda t: {"action": t["action"]}).iterator()):
            action = np.asarray(traj["action"], dtype=np.float32)
            chunks.append(action)
            dataset_index.append(np.full(len(action), g))
            episode_index.append(np.full(len(action), e))
            count += len(action)
            if count >= max_samples:
                log.info("%s: stopped reading at %d actions (bins.max_samples)", name, count)
                break
        log.info("%s: %d training actions read", name, count)
        if count == 0:
            raise ValueError(f"dataset {name!r} under {data_dir}: the training split has no actions")
    return names, np.concatenate(chunks), np.concatenate(dataset_index), np.concatenate(episode_index)


def fit_bins(
    cfg: Any,
    *,
    data_dir: str | Path,
    statistics_path: str | Path,
    mixture: str,
    vocab_size: int,
    out_dir: str | Path,
    plots_dir: str | Path,
    run: Any = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """The ``bins`` stage: read, normalize, fit, save the tokenizer to ``out_dir``, write plots, return metrics.

    ``chunk``: ``data.chunk``, the K of ``bins.scheme=fast`` when ``bins.fast_chunk`` is 0."""
    statistics_path = Path(statistics_path)
    if not statistics_path.is_file():
        raise FileNotFoundError(f"{statistics_path}: dataset statistics not found (run the `stats` stage first)")
    statistics = json.loads(statistics_path.read_text())
    names, raw, dataset_index, episode_index = read_training_actions(data_dir, mixture, cfg.max_samples)
    missing = [n for n in names if n not in statistics]
    if missing:
        raise KeyError(f"{statistics_path}: no statistics for {missing} (has {sorted(statistics)})")
    stats = [statistics[n]["action"] for n in names]
    tokenizer, summary, arrays = measure_tokenizer(cfg, vocab_size, raw, stats, dataset_index, episode_index, chunk)
    extra = {
        "datasets": names,
        "normalization": cfg.normalization,
        "num_actions": len(raw),
        "statistics": str(statistics_path),
    }
    save_action_tokenizer(tokenizer, out_dir, extra=extra)
    write_plots(Path(plots_dir), tokenizer, arrays)
    if cfg.scheme == "fast":
        log.info(
            "fast tokenizer (K=%d, scale %g, %d BPE tokens): %.1f tokens per chunk (max %d) for %d values, mean "
            "|error| %.5f normalized (uniform %.5f), %.5f in dataset units",
            summary["chunk"], cfg.fast_scale, summary["fast_tokens_learned"], summary["tokens_per_chunk_mean"],
            summary["tokens_per_chunk_max"], summary["uniform_tokens_per_chunk"], summary["err_norm_mean"],
            summary["uniform_err_norm_mean"], summary["err_raw_mean"],
        )  # fmt: skip
    else:
        log.info(
            "%s tokenizer: mean |error| %.5f normalized (uniform %.5f), %.5f in dataset units; %.1f effective bins",
            cfg.scheme,
            summary["err_norm_mean"],
            summary["uniform_err_norm_mean"],
            summary["err_raw_mean"],
            summary["effective_bins_mean"],
        )
    if run is not None:
        run.log_metrics(flat_metrics(summary))
        run.log_artifacts(out_dir, artifact_path="tokenizer")
        run.log_artifacts(plots_dir, artifact_path="plots")
    return summary
