"""Action tokenizers: continuous actions in [−1, 1] ↔ ids of the LLM vocabulary's last pieces (DESIGN §4).

``ActionTokenizer`` is OpenVLA's uniform scheme, kept bit-exact because the official checkpoint depends on it:

* ``bins = linspace(−1, 1, n_bins)`` (256 edges), ``bin_centers`` = the 255 midpoints;
* encode: clip to [−1, 1], ``d = np.digitize(a, bins)`` ∈ [1, n_bins] (``a == 1.0`` gives ``n_bins``),
  ``id = vocab_size − d`` — the action ids are the last ``n_bins`` ids of the **unpadded** vocabulary;
* decode: ``d = vocab_size − id``, ``index = clip(d − 1, 0, n_bins − 2)``, ``value = bin_centers[index]``.

So values inside [−1, 1] come back within half a bin width (1/255 for 256 bins); ``a == 1.0`` lands in the last
interval like its neighbours. Ids outside the action range decode by the same clipping, as OpenVLA's do.

``QuantileActionTokenizer`` keeps the id layout and the API but fits its bins per action dimension on normalized
training actions: bin j is represented by the empirical quantile at level (j + ½)/(n_bins − 1), inner edges lie
halfway between neighbouring representatives (nearest-representative quantization; quantile *edges* decoded at
their midpoints would put a binary gripper's 0 in a bin decoding to ~0.45), and both are blended with OpenVLA's
(``uniform_mix``) so every bin keeps at least ``uniform_mix`` times OpenVLA's width (no empty, zero-width bins).
Where the data has no mass the bins are wide, so rare values decode less precisely than with uniform bins.
``decode_mode`` ``"quantile"`` decodes to the representatives, ``"mean"`` to the mean of the training values that fell
in each bin (the conditional mean minimizes the squared reconstruction error and is exact for discrete dimensions such
as a binary gripper). Its arrays are per dimension, so inputs must have the action dimension on the last axis (a flat
1-D run of whole actions is accepted and reshaped).

``FastActionTokenizer`` (``openvla.actions.fast``) encodes whole chunks with DCT + BPE into a variable number of ids
from the vocabulary's last ``fast_vocab_size`` pieces (DESIGN §15).

``save_action_tokenizer`` / ``load_action_tokenizer`` store any kind as ``action_tokenizer.json`` (+ ``.npy``
arrays for quantile bins, the BPE model for FAST) in a directory written atomically, so training and exports restore
the exact tokenizer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openvla.io import atomic_directory

log = logging.getLogger(__name__)

TOKENIZER_FILE = "action_tokenizer.json"
FORMAT_VERSION = 1
DecodeMode = Literal["quantile", "mean", "center"]


class ActionTokenizer:
    """OpenVLA's uniform action tokenizer over the last ``n_bins`` ids of a ``vocab_size`` vocabulary."""

    scheme = "uniform"

    def __init__(self, vocab_size: int, n_bins: int = 256) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be at least 2 (two edges make one bin), got {n_bins}")
        if vocab_size <= n_bins:
            raise ValueError(f"vocab_size ({vocab_size}) must exceed n_bins ({n_bins}): action ids are its last pieces")
        self.vocab_size = int(vocab_size)
        self.n_bins = int(n_bins)
        # float64 as numpy makes them: the edges and centres are part of the checkpoint's contract.
        self.bins = np.linspace(-1.0, 1.0, self.n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0

    @property
    def action_token_begin_idx(self) -> int:
        """Ids strictly greater than this are action tokens (OpenVLA: ``vocab_size − (n_bins + 1)``)."""
        return self.vocab_size - (self.n_bins + 1)

    @property
    def action_dim(self) -> int | None:
        """The action dimension the tokenizer was fitted for (None: any, the uniform scheme is per value)."""
        return None

    def is_action_token(self, token_ids: Any) -> np.ndarray:
        """Boolean mask of ids in the action range ``(action_token_begin_idx, vocab_size)``."""
        ids = np.asarray(token_ids)
        return (ids > self.action_token_begin_idx) & (ids < self.vocab_size)

    def encode(self, actions: Any) -> np.ndarray:
        """Normalized actions (any shape) → int64 token ids of the same shape."""
        values = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        return (self.vocab_size - np.digitize(values, self.bins)).astype(np.int64)

    def decode(self, token_ids: Any) -> np.ndarray:
        """Token ids (any shape) → float32 normalized actions of the same shape (bin centres)."""
        index = self._bin_index(token_ids)
        return self.bin_centers[index].astype(np.float32)

    def _bin_index(self, token_ids: Any) -> np.ndarray:
        ids = np.asarray(token_ids, dtype=np.int64)
        return np.clip(self.vocab_size - ids - 1, 0, self.n_bins - 2)

    def bin_width(self) -> np.ndarray:
        """Width of every bin, shape (n_bins − 1,) (per dimension for fitted schemes)."""
        return np.diff(self.bins, axis=-1)

    def metadata(self) -> dict[str, Any]:
        """JSON-able description (what ``save_action_tokenizer`` writes next to the arrays)."""
        return {"format": FORMAT_VERSION, "scheme": self.scheme, "vocab_size": self.vocab_size, "n_bins": self.n_bins}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, n_bins={self.n_bins})"


class QuantileActionTokenizer(ActionTokenizer):
    """Per-dimension edges fitted on normalized data; same ids and API as ``ActionTokenizer``.

    ``bins`` has shape (action_dim, n_bins) (strictly increasing rows from −1 to 1) and ``bin_centers`` shape
    (action_dim, n_bins − 1): the values ids decode to (quantile representatives, bin means, or midpoints when
    built from edges alone; see ``decode_mode``).
    Build it with ``QuantileActionTokenizer.fit(actions, vocab_size)`` or from saved arrays.
    """

    scheme = "quantile"

    def __init__(
        self,
        vocab_size: int,
        bins: np.ndarray,
        bin_centers: np.ndarray | None = None,
        decode_mode: DecodeMode = "center",
        uniform_mix: float = 0.0,
    ) -> None:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 2 or edges.shape[1] < 2:
            raise ValueError(f"bins must have shape (action_dim, n_bins ≥ 2), got {edges.shape}")
        super().__init__(vocab_size, edges.shape[1])
        if np.any(np.diff(edges, axis=1) < 0):
            raise ValueError("bins must be non-decreasing along each action dimension")
        if not (np.all(edges[:, 0] == -1.0) and np.all(edges[:, -1] == 1.0)):
            raise ValueError("bins must start at −1 and end at 1 in every dimension (values are clipped to [−1, 1])")
        self.bins = edges
        midpoints = (edges[:, :-1] + edges[:, 1:]) / 2.0
        centers = midpoints if bin_centers is None else np.asarray(bin_centers, dtype=np.float64)
        if centers.shape != midpoints.shape:
            raise ValueError(f"bin_centers must have shape {midpoints.shape}, got {centers.shape}")
        self.bin_centers = centers
        self.decode_mode = decode_mode
        self.uniform_mix = float(uniform_mix)

    @property
    def action_dim(self) -> int:
        return int(self.bins.shape[0])

    @classmethod
    def fit(
        cls,
        actions: Any,
        vocab_size: int,
        n_bins: int = 256,
        uniform_mix: float = 0.1,
        decode_mode: DecodeMode = "mean",
    ) -> QuantileActionTokenizer:
        """Fit representatives, edges (and decode values) on normalized actions of shape (N, action_dim).

        Bin j's representative is the empirical quantile at level (j + ½)/(n_bins − 1); inner edges lie halfway
        between neighbouring representatives (each value goes to its nearest representative). Quantile *edges*
        with midpoint decoding would be wrong for point masses: a binary gripper puts one bin from 0 to ~0.9 that
        decodes to ~0.45. ``uniform_mix`` ∈ [0, 1] blends representatives and edges with OpenVLA's centres and
        edges (1 gives OpenVLA's bins back exactly); above 0 every bin is at least ``uniform_mix · 2 / (n_bins − 1)``
        wide, so edges strictly increase even on discrete data.
        ``decode_mode="mean"`` then replaces each representative by the mean of the fitted values in its bin.
        """
        data = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"fit expects normalized actions of shape (N ≥ 1, action_dim), got {data.shape}")
        if not 0.0 <= uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must lie in [0, 1], got {uniform_mix}")
        if decode_mode not in ("quantile", "mean"):
            raise ValueError(f"decode_mode must be 'quantile' or 'mean', got {decode_mode!r}")
        uniform = ActionTokenizer(vocab_size, n_bins)
        levels = (np.arange(n_bins - 1) + 0.5) / (n_bins - 1)
        reps = np.quantile(data, levels, axis=0).T  # (D, n_bins - 1)
        centers = (1.0 - uniform_mix) * reps + uniform_mix * uniform.bin_centers
        inner = (1.0 - uniform_mix) * (reps[:, :-1] + reps[:, 1:]) / 2.0 + uniform_mix * uniform.bins[1:-1]
        ones = np.ones((data.shape[1], 1))
        edges = np.maximum.accumulate(np.concatenate([-ones, np.clip(inner, -1.0, 1.0), ones], axis=1), axis=1)
        tok = cls(vocab_size, edges, centers, decode_mode="quantile", uniform_mix=uniform_mix)
        if decode_mode == "mean":
            tok.bin_centers = tok._conditional_means(data)
            tok.decode_mode = "mean"
        return tok

    def _conditional_means(self, data: np.ndarray) -> np.ndarray:
        """Mean of the fitted values per bin (the current decode value where a bin saw no value)."""
        index = self._bin_index(self.encode(data))  # (N, D)
        n_intervals = self.n_bins - 1
        means = self.bin_centers.copy()
        for dim in range(self.action_dim):
            counts = np.bincount(index[:, dim], minlength=n_intervals)
            sums = np.bincount(index[:, dim], weights=data[:, dim], minlength=n_intervals)
            seen = counts > 0
            means[dim, seen] = sums[seen] / counts[seen]
        return means

    def _shaped(self, array: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """View ``array`` as (..., action_dim); a flat run of whole actions is reshaped to (k, action_dim)."""
        shape = array.shape
        if array.ndim >= 1 and shape[-1] == self.action_dim:
            return array, shape
        if array.ndim == 1 and array.size % self.action_dim == 0:
            return array.reshape(-1, self.action_dim), shape
        raise ValueError(
            f"{type(self).__name__} was fitted for action_dim={self.action_dim}: the last axis must have that size "
            f"(or a 1-D input a multiple of it), got shape {shape}"
        )

    def encode(self, actions: Any) -> np.ndarray:
        values, shape = self._shaped(np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0))
        digits = np.empty(values.shape, dtype=np.int64)
        for dim in range(self.action_dim):
            digits[..., dim] = np.digitize(values[..., dim], self.bins[dim])
        return (self.vocab_size - digits).reshape(shape)

    def decode(self, token_ids: Any) -> np.ndarray:
        index, shape = self._shaped(self._bin_index(token_ids))
        values = self.bin_centers[np.arange(self.action_dim), index]  # broadcasts (D,) with (..., D)
        return values.astype(np.float32).reshape(shape)

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "action_dim": self.action_dim,
            "decode_mode": self.decode_mode,
            "uniform_mix": self.uniform_mix,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, n_bins={self.n_bins}, action_dim={self.action_dim}, "
            f"decode_mode={self.decode_mode!r}, uniform_mix={self.uniform_mix})"
        )


def save_action_tokenizer(
    tokenizer: ActionTokenizer, directory: str | Path, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``tokenizer`` to ``directory`` atomically (JSON metadata + ``bins.npy``/``bin_centers.npy``).

    ``extra`` (e.g. the dataset and normalization it was fitted with) is stored under ``"extra"`` in the JSON.
    """
    directory = Path(directory)
    meta = tokenizer.metadata()
    if extra:
        meta["extra"] = dict(extra)
    with atomic_directory(directory) as tmp:
        if getattr(tokenizer, "scheme", None) == "fast":
            (tmp / meta["bpe_file"]).write_text(tokenizer.bpe_json())
        if isinstance(tokenizer, QuantileActionTokenizer):
            np.save(tmp / "bins.npy", tokenizer.bins)
            np.save(tmp / "bin_centers.npy", tokenizer.bin_centers)
        (tmp / TOKENIZER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("Saved %r to %s", tokenizer, directory)
    return directory


def load_action_tokenizer(directory: str | Path) -> ActionTokenizer:
    """Restore the tokenizer ``save_action_tokenizer`` wrote (the exact edges and decode values)."""
    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no action tokenizer here (expected the output of the `bins` stage)")
    meta = json.loads(path.read_text())
    scheme = meta.get("scheme")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    if scheme == "uniform":
        return ActionTokenizer(int(meta["vocab_size"]), int(meta["n_bins"]))
    if scheme == "quantile":
        tok = QuantileActionTokenizer(
            int(meta["vocab_size"]),
            np.load(directory / "bins.npy"),
            np.load(directory / "bin_centers.npy"),
            decode_mode=meta.get("decode_mode", "center"),
            uniform_mix=float(meta.get("uniform_mix", 0.0)),
        )
        if tok.n_bins != int(meta["n_bins"]):
            raise ValueError(f"{path}: n_bins {meta['n_bins']} disagrees with bins.npy ({tok.n_bins} edges)")
        return tok
    if scheme == "fast":
        from openvla.actions.fast import FastActionTokenizer

        return FastActionTokenizer.from_saved(meta, (directory / meta["bpe_file"]).read_text())
    raise ValueError(f"{path}: unknown scheme {scheme!r}; expected 'uniform', 'quantile' or 'fast'")


def read_tokenizer_metadata(directory: str | Path) -> dict[str, Any]:
    """The JSON a saved tokenizer carries (scheme, sizes and the ``extra`` fitting information)."""
    return json.loads((Path(directory) / TOKENIZER_FILE).read_text())


def resolve_action_tokenizer(directory: str | Path | None, vocab_size: int, n_bins: int = 256) -> ActionTokenizer:
    """The tokenizer saved in ``directory`` (the ``bins`` stage output), or OpenVLA's uniform one without it.

    Training and exports call this so a fitted scheme is used end to end; a saved tokenizer made for another
    vocabulary or bin count is an error (its ids would not be the model's action tokens).
    """
    if directory is None or not (Path(directory) / TOKENIZER_FILE).is_file():
        return ActionTokenizer(vocab_size, n_bins)
    tokenizer = load_action_tokenizer(directory)
    if (tokenizer.vocab_size, tokenizer.n_bins) != (vocab_size, n_bins):
        raise ValueError(
            f"{directory}: action tokenizer made for vocab_size={tokenizer.vocab_size}, n_bins={tokenizer.n_bins}, "
            f"but the model has vocab_size={vocab_size}, n_bins={n_bins} (rerun the `bins` stage with this "
            "model.tokenizer, or align bins.n_bins with the model's n_action_bins)"
        )
    return tokenizer
