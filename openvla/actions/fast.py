"""FAST action tokens: a chunk of K normalized actions → DCT → scaled, rounded coefficients → BPE (DESIGN §15).

Encoding a chunk ``x`` of shape (K, D) (normalized, clipped to [−1, 1]):

1. ``c = dct(x, type=2, norm="ortho", axis=0)`` — one orthonormal DCT-II along time per action dimension;
2. ``q = round(scale · c)`` — integers; since the DCT is orthonormal, ``|c| ≤ ‖x[:, d]‖₂ ≤ √K``, so every ``q``
   lies in ``[−B, B]`` with ``B = ceil(scale · √K)`` and the alphabet is fixed by (K, scale) alone;
3. flatten low frequencies first (coefficient 0 of every dimension, then coefficient 1, …: ``q.reshape(-1)`` of
   the (K, D) array), map each integer to one character (``chr(SYMBOL_BASE + q + B)``, a reversible one-to-one map
   into a block of CJK ideographs, so no whitespace or control character is involved);
4. byte-pair-encode that string with a Hugging Face ``tokenizers`` BPE model trained on the training chunks (no
   normalizer, no pre-tokenizer: one chunk is one word; every symbol of the alphabet is in the vocabulary, so any
   chunk encodes);
5. BPE id ``t`` becomes LLM id ``vocab_size − 1 − t``: the FAST vocabulary takes the last ``fast_vocab_size`` ids
   of the **unpadded** LLM vocabulary, as OpenVLA's 256 bins take the last 256.

Decoding inverts each step: LLM ids → BPE pieces → characters → integers → (K, D) coefficients / scale → inverse
DCT → clip to [−1, 1]. Rounding bounds the error: each coefficient is off by at most ``0.5 / scale``, so each value
by at most ``0.5 · √K / scale`` (Cauchy–Schwarz on one row of the orthonormal inverse) and its root mean square over
a dimension's K values by at most ``0.5 / scale`` (Parseval); clipping to [−1, 1] only moves values closer.

A generated sequence need not be valid: ids outside the learned FAST range (text tokens, ``</s>`` in the middle)
are dropped, and a sequence whose pieces do not spell exactly K·D integers is padded with zero coefficients (no
contribution at that frequency) or cut. Each repair is logged and counted (``repair_counts()``), never raised.

``FastActionTokenizer`` keeps the per-value interface every action tokenizer has (``encode`` / ``decode`` of
values of any shape, ``n_bins``): those are OpenVLA's uniform bins over the same vocabulary, used only where a
metric compares actions value by value (e.g. eval-bridge's "token accuracy", bin agreement as for the L1 head).
FAST chunks go through ``encode_chunk`` / ``encode_chunks`` and ``decode_chunk`` / ``decode_chunks``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from openvla.actions.tokenizer import ActionTokenizer

log = logging.getLogger(__name__)

SYMBOL_BASE = 0x4E00  # first CJK unified ideograph; 20,992 code points follow without gaps
MAX_SYMBOLS = 20_992
MIN_FREQUENCY = 2  # a merge seen once would memorize one training chunk
BPE_FILE = "fast_bpe.json"
REPAIR_KINDS = ("dropped_ids", "padded", "cut")
_MAX_REPAIR_WARNINGS = 20


def dct(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Orthonormal DCT-II along ``axis`` (scipy)."""
    from scipy.fft import dct as _dct

    return _dct(x, type=2, norm="ortho", axis=axis)


def idct(c: np.ndarray, axis: int = 0) -> np.ndarray:
    """Inverse of ``dct`` (orthonormal DCT-III)."""
    from scipy.fft import idct as _idct

    return _idct(c, type=2, norm="ortho", axis=axis)


def coefficient_bound(chunk: int, scale: float) -> int:
    """B: every rounded, scaled coefficient of a chunk in [−1, 1]^K lies in [−B, B]."""
    return math.ceil(scale * math.sqrt(chunk))


def max_abs_error(chunk: int, scale: float) -> float:
    """Largest |decode(encode(x)) − x| the rounding allows for one value of a chunk inside [−1, 1]."""
    return 0.5 * math.sqrt(chunk) / scale


class FastActionTokenizer(ActionTokenizer):
    """FAST chunks over the last ``fast_vocab_size`` ids of a ``vocab_size`` vocabulary (module docstring).

    Build it with ``FastActionTokenizer.fit(chunks, vocab_size, ...)`` on normalized chunks (N, K, D), or from a
    saved BPE model (``openvla.actions.load_action_tokenizer``).
    """

    scheme = "fast"

    def __init__(
        self,
        vocab_size: int,
        chunk: int,
        action_dim: int,
        bpe: Any,
        scale: float = 10.0,
        fast_vocab_size: int = 1024,
        n_bins: int = 256,
    ) -> None:
        super().__init__(vocab_size, n_bins)
        if chunk < 1 or action_dim < 1:
            raise ValueError(f"chunk and action_dim must be at least 1, got {chunk} and {action_dim}")
        if scale <= 0:
            raise ValueError(f"the FAST scale must be positive, got {scale}")
        self.chunk = int(chunk)
        self._action_dim = int(action_dim)
        self.scale = float(scale)
        self.bound = coefficient_bound(self.chunk, self.scale)
        n_symbols = 2 * self.bound + 1
        if n_symbols > MAX_SYMBOLS:
            raise ValueError(f"scale {scale} with chunk {chunk} needs {n_symbols} symbols, at most {MAX_SYMBOLS}")
        if not n_symbols <= fast_vocab_size < vocab_size:
            raise ValueError(
                f"fast_vocab_size ({fast_vocab_size}) must hold the {n_symbols} integer symbols of chunk {chunk} at "
                f"scale {scale} and stay below the LLM vocabulary ({vocab_size})"
            )
        if n_bins > fast_vocab_size:
            raise ValueError(f"n_bins ({n_bins}) must not exceed fast_vocab_size ({fast_vocab_size})")
        self.fast_vocab_size = int(fast_vocab_size)
        self.bpe = bpe
        self.bpe_vocab_size = int(bpe.get_vocab_size())
        if self.bpe_vocab_size > self.fast_vocab_size:
            raise ValueError(f"the BPE model has {self.bpe_vocab_size} tokens, more than fast_vocab_size "
                             f"{self.fast_vocab_size}")  # fmt: skip
        pieces = [bpe.id_to_token(i) for i in range(self.bpe_vocab_size)]
        if any(p is None for p in pieces):
            raise ValueError("the BPE model's ids are not contiguous from 0")
        self._symbols = [chr(SYMBOL_BASE + i) for i in range(n_symbols)]
        missing = [s for s in self._symbols if bpe.token_to_id(s) is None]
        if missing:
            raise ValueError(f"the BPE model lacks {len(missing)} of the {n_symbols} integer symbols: some chunks "
                             "would not encode")  # fmt: skip
        bad = [p for p in pieces if not all(0 <= ord(ch) - SYMBOL_BASE < n_symbols for ch in p)]
        if bad:
            raise ValueError(f"the BPE model has pieces outside the integer alphabet, e.g. {bad[0]!r}")
        # each BPE id → the integers it spells
        self._piece_values = [np.array([ord(ch) - SYMBOL_BASE - self.bound for ch in p], np.int64) for p in pieces]
        self._piece_lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        self._lock = threading.Lock()
        self._repairs: Counter[str] = Counter()
        self._decoded = 0

    # --- layout ---------------------------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        return self._action_dim

    @property
    def values_per_chunk(self) -> int:
        """K·D: what OpenVLA spends in tokens on one chunk, and the most FAST tokens a valid chunk can take."""
        return self.chunk * self._action_dim

    @property
    def max_tokens(self) -> int:
        """Longest valid FAST sequence (every BPE piece spells at least one integer)."""
        return self.values_per_chunk

    @property
    def action_token_begin_idx(self) -> int:
        """Ids strictly greater than this are in the reserved FAST range ``[V − fast_vocab_size, V − 1]``."""
        return self.vocab_size - (self.fast_vocab_size + 1)

    @property
    def first_learned_id(self) -> int:
        """The lowest id a learned BPE token takes (``V − bpe_vocab_size``)."""
        return self.vocab_size - self.bpe_vocab_size

    # --- fitting --------------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        chunks: Any,
        vocab_size: int,
        *,
        scale: float = 10.0,
        fast_vocab_size: int = 1024,
        n_bins: int = 256,
        min_frequency: int = MIN_FREQUENCY,
    ) -> FastActionTokenizer:
        """Train the BPE vocabulary (at most ``fast_vocab_size`` tokens) on normalized chunks of shape (N, K, D)."""
        from tokenizers import Tokenizer, models, trainers

        data = np.asarray(chunks, dtype=np.float64)
        if data.ndim != 3 or data.shape[0] == 0:
            raise ValueError(f"fit expects normalized chunks of shape (N ≥ 1, K, D), got {data.shape}")
        _, k, d = data.shape
        bound = coefficient_bound(k, scale)
        alphabet = [chr(SYMBOL_BASE + i) for i in range(2 * bound + 1)]
        if len(alphabet) > fast_vocab_size:
            raise ValueError(f"fast_vocab_size ({fast_vocab_size}) is smaller than the {len(alphabet)} integer "
                             f"symbols of chunk {k} at scale {scale}")  # fmt: skip
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=fast_vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=alphabet,
            special_tokens=[],
            show_progress=False,
        )
        strings = [_to_string(q, bound) for q in _quantize(data, scale, bound)]
        bpe.train_from_iterator(strings, trainer, length=len(strings))
        tok = cls(vocab_size, k, d, bpe, scale=scale, fast_vocab_size=fast_vocab_size, n_bins=n_bins)
        log.info("FAST: %d BPE tokens learned on %d chunks (K=%d, D=%d, scale %g)", tok.bpe_vocab_size, len(data),
                 k, d, scale)  # fmt: skip
        return tok

    # --- chunks → ids -----------------------------------------------------------------------------------------------
    def _check_chunks(self, chunks: Any) -> np.ndarray:
        data = np.asarray(chunks, dtype=np.float64)
        if data.shape[-2:] != (self.chunk, self._action_dim):
            raise ValueError(
                f"FAST tokenizer fitted for chunks of shape ({self.chunk}, {self._action_dim}), got {data.shape}"
            )
        return data

    def coefficients(self, chunks: Any) -> np.ndarray:
        """The rounded, scaled DCT coefficients of chunks (..., K, D), int64 of the same shape."""
        data = self._check_chunks(chunks)
        return _quantize(data.reshape(-1, self.chunk, self._action_dim), self.scale, self.bound).reshape(data.shape)

    def encode_chunk(self, chunk: Any) -> np.ndarray:
        """One normalized chunk (K, D) → its FAST token ids, int64 (L,) with 1 ≤ L ≤ K·D."""
        data = self._check_chunks(chunk)
        if data.ndim != 2:
            raise ValueError(f"encode_chunk takes one chunk (K, D), got {data.shape}; use encode_chunks")
        return self.encode_chunks(data[None])[0]

    def encode_chunks(self, chunks: Any) -> list[np.ndarray]:
        """Normalized chunks (N, K, D) → N arrays of FAST token ids (variable lengths)."""
        data = self._check_chunks(chunks)
        if data.ndim != 3:
            raise ValueError(f"encode_chunks takes (N, K, D), got {data.shape}")
        strings = [_to_string(q, self.bound) for q in _quantize(data, self.scale, self.bound)]
        encoded = self.bpe.encode_batch(strings, add_special_tokens=False)
        return [self.vocab_size - 1 - np.asarray(e.ids, dtype=np.int64) for e in encoded]

    # --- ids → chunks -----------------------------------------------------------------------------------------------
    def decode_chunk(self, token_ids: Iterable[int]) -> np.ndarray:
        """FAST token ids of one chunk → the normalized chunk (K, D), float32, repaired when invalid."""
        return self.decode_chunks([token_ids])[0]

    def decode_chunks(self, sequences: Iterable[Iterable[int]]) -> np.ndarray:
        """Sequences of FAST ids (``</s>`` already stripped) → normalized chunks (N, K, D), float32."""
        coefficient_rows = [self._sequence_coefficients(seq) for seq in sequences]
        if not coefficient_rows:
            return np.zeros((0, self.chunk, self._action_dim), dtype=np.float32)
        q = np.stack(coefficient_rows).reshape(-1, self.chunk, self._action_dim)
        values = idct(q.astype(np.float64) / self.scale, axis=1)
        return np.clip(values, -1.0, 1.0).astype(np.float32)

    def _sequence_coefficients(self, sequence: Iterable[int]) -> np.ndarray:
        ids = np.asarray(list(sequence), dtype=np.int64).reshape(-1)
        bpe_ids = self.vocab_size - 1 - ids
        valid = (bpe_ids >= 0) & (bpe_ids < self.bpe_vocab_size)
        repairs: list[str] = []
        if not valid.all():
            repairs.append("dropped_ids")
            bpe_ids = bpe_ids[valid]
        parts = [self._piece_values[i] for i in bpe_ids.tolist()]
        values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        spelled, n = len(values), self.values_per_chunk
        if spelled < n:
            repairs.append("padded")
            values = np.concatenate([values, np.zeros(n - spelled, dtype=np.int64)])
        elif spelled > n:
            repairs.append("cut")
            values = values[:n]
        with self._lock:
            self._decoded += 1
            self._repairs.update(repairs)
            total = sum(self._repairs.values())
        if repairs and total <= _MAX_REPAIR_WARNINGS:
            log.warning(
                "FAST: repaired a sequence of %d ids (%s): %d invalid ids dropped, %d integers for %d values%s",
                len(ids), ", ".join(repairs), int((~valid).sum()), spelled, n,
                "; further repairs are only counted" if total == _MAX_REPAIR_WARNINGS else "",
            )  # fmt: skip
        return values

    def repair_counts(self) -> dict[str, int]:
        """Sequences decoded so far and how many needed each repair (a sequence may need two)."""
        with self._lock:
            out = {"decoded": self._decoded, **{k: int(self._repairs.get(k, 0)) for k in REPAIR_KINDS}}
        out["repaired"] = out["dropped_ids"] + out["padded"] + out["cut"]
        return out

    def reset_repair_counts(self) -> None:
        with self._lock:
            self._repairs.clear()
            self._decoded = 0

    # --- saving ---------------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "chunk": self.chunk,
            "action_dim": self._action_dim,
            "scale": self.scale,
            "fast_vocab_size": self.fast_vocab_size,
            "bpe_vocab_size": self.bpe_vocab_size,
            "coefficient_bound": self.bound,
            "symbol_base": SYMBOL_BASE,
            "bpe_file": BPE_FILE,
        }

    def bpe_json(self) -> str:
        """The BPE model as ``tokenizers`` serializes it (what ``save_action_tokenizer`` writes to ``BPE_FILE``)."""
        return self.bpe.to_str()

    @classmethod
    def from_saved(cls, meta: dict[str, Any], bpe_json: str) -> FastActionTokenizer:
        from tokenizers import Tokenizer

        if int(meta.get("symbol_base", SYMBOL_BASE)) != SYMBOL_BASE:
            raise ValueError(f"FAST tokenizer saved with symbol base {meta['symbol_base']}, this code uses "
                             f"{SYMBOL_BASE}")  # fmt: skip
        tok = cls(
            int(meta["vocab_size"]),
            int(meta["chunk"]),
            int(meta["action_dim"]),
            Tokenizer.from_str(bpe_json),
            scale=float(meta["scale"]),
            fast_vocab_size=int(meta["fast_vocab_size"]),
            n_bins=int(meta["n_bins"]),
        )
        if tok.bpe_vocab_size != int(meta["bpe_vocab_size"]) or tok.bound != int(meta["coefficient_bound"]):
            raise ValueError("the saved FAST metadata disagrees with its BPE model (vocabulary size or bound)")
        return tok

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, chunk={self.chunk}, action_dim={self._action_dim}, "
            f"scale={self.scale:g}, fast_vocab_size={self.fast_vocab_size}, bpe_vocab_size={self.bpe_vocab_size})"
        )


def _quantize(chunks: np.ndarray, scale: float, bound: int) -> np.ndarray:
    """(N, K, D) normalized chunks → (N, K, D) int64 rounded scaled DCT coefficients in [−bound, bound]."""
    coefficients = dct(np.clip(chunks, -1.0, 1.0), axis=1) * scale
    return np.clip(np.rint(coefficients), -bound, bound).astype(np.int64)


def _to_string(q: np.ndarray, bound: int) -> str:
    """(K, D) integers → one character each, low frequencies first (row-major over (K, D))."""
    return "".join(map(chr, (q.reshape(-1) + bound + SYMBOL_BASE).tolist()))


def chunks_from_episodes(actions: np.ndarray, episode_ids: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Every step's chunk of ``chunk`` actions (itself and the next ones), clamped at the episode's last step, as the
    training data pipeline builds them (``chunk_window``). ``actions`` (N, D) with rows of an episode contiguous and
    in order; returns (chunks (N, K, D), row index (N,) of each chunk's first step)."""
    actions = np.asarray(actions)
    episode_ids = np.asarray(episode_ids)
    if len(actions) != len(episode_ids):
        raise ValueError(f"{len(actions)} actions but {len(episode_ids)} episode ids")
    starts = np.flatnonzero(np.r_[True, episode_ids[1:] != episode_ids[:-1]])
    ends = np.r_[starts[1:], len(actions)]
    index = np.empty((len(actions), chunk), dtype=np.int64)
    for start, end in zip(starts, ends, strict=True):
        steps = np.arange(start, end)[:, None] + np.arange(chunk)[None, :]
        index[start:end] = np.minimum(steps, end - 1)
    return actions[index], np.arange(len(actions))


def token_lengths(sequences: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([len(s) for s in sequences], dtype=np.int64)


__all__ = [
    "BPE_FILE",
    "FastActionTokenizer",
    "chunks_from_episodes",
    "coefficient_bound",
    "dct",
    "idct",
    "max_abs_error",
    "token_lengths",
]
