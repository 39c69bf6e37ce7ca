"""The LLM's text tokenizer, loaded offline from a local SentencePiece model (DESIGN §3, §10).

OpenVLA tokenizes with Llama-2's ``LlamaTokenizerFast``: BOS added, no EOS, ``<PAD>`` added as a special token at
id 32000 (the model pads its embeddings to 32064), right padding, 2048 tokens at most. Its tokenizer.json prepends
"▁" to every text segment between special tokens, which transformers 5 calls ``legacy=True`` (Metaspace
``prepend_scheme="always"``); we load with that flag and record it in ``init_kwargs`` so a ``save_pretrained`` copy
(the HF export) reloads with the same behaviour. OpenVLA's training prompts never put text after a special token,
so the flag changes no training id; it matters only for odd user prompts. From a ``tokenizer.model`` the BPE
merges are ordered as SentencePiece applies them (score of the merged piece), as transformers 4.40's converter wrote
OpenVLA's tokenizer.json; transformers 5's converter puts the "▁▁" whitespace pieces (score −1e9) first, which would
change the ids of texts with runs of spaces. Exports stay readable by OpenVLA's pinned stack with the same ids: see
``openvla.hf.tokenizer_files``.

``spec``: ``"mistral-v1"`` → the Mistral-7B v0.1 SentencePiece model bundled in the ``mistral-common`` wheel
(32,000 pieces, same special/byte layout as Llama-2, "▁" = 28705); a path to a ``tokenizer.model``; or a directory
holding ``tokenizer.model`` and/or tokenizer files as ``save_pretrained`` writes them (an export). Nothing is ever
fetched from the hub.

Facts checked by tests/test_text_tokenizer.py for both the Llama-2 and the Mistral v1 models: the prompt encodes to
BOS + the SentencePiece pieces; ``prompt + " " + decode(7 action ids) + "</s>"`` encodes to the prompt ids, "▁",
exactly those 7 ids and EOS; each of the 256 action ids decodes to one character that re-encodes to itself there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PAD_TOKEN = "<PAD>"
MISTRAL_V1 = "mistral-v1"
DEFAULT_MAX_LENGTH = 2048  # OpenVLA's llm_max_length


def mistral_v1_model_path() -> Path:
    """The Mistral-7B v0.1 ``tokenizer.model.v1`` shipped inside the installed ``mistral-common`` wheel."""
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed mistral-common wheel lacks tokenizer.model.v1")
    return path


def resolve_tokenizer_source(spec: str) -> Path:
    """Where ``spec`` points: a SentencePiece model file or a tokenizer directory (never a hub id)."""
    if spec == MISTRAL_V1:
        return mistral_v1_model_path()
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file():
            return path
        raise FileNotFoundError(f"{path}: no tokenizer.json or tokenizer.model in this directory")
    raise FileNotFoundError(
        f"model.tokenizer={spec!r}: expected {MISTRAL_V1!r}, a path to a SentencePiece tokenizer.model, or a "
        "directory with tokenizer files (hub ids are not downloaded)"
    )


def load_text_tokenizer(spec: str, model_max_length: int = DEFAULT_MAX_LENGTH) -> Any:
    """Load the Llama tokenizer for ``spec`` with OpenVLA's settings (``<PAD>`` = first id after the vocabulary).

    Returns a ``transformers.LlamaTokenizer`` (the tokenizers-backed class, formerly ``LlamaTokenizerFast``) with
    ``add_bos_token=True``, ``add_eos_token=False``, ``pad_token="<PAD>"`` and right padding.
    """
    from transformers import AutoTokenizer, LlamaTokenizer

    source = resolve_tokenizer_source(spec)
    kwargs = {
        "legacy": True,
        "add_bos_token": True,
        "add_eos_token": False,
        "padding_side": "right",
        "model_max_length": model_max_length,
    }
    if source.is_dir() and (source / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True, **kwargs)
    else:
        model_file = source / "tokenizer.model" if source.is_dir() else source
        vocab, merges = sentencepiece_vocab_and_merges(model_file)  # SentencePiece's merge order (module doc)
        tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, **kwargs)
    if tokenizer.pad_token != PAD_TOKEN:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if tokenizer.pad_token_id != tokenizer.vocab_size:
        raise ValueError(
            f"{source}: {PAD_TOKEN} got id {tokenizer.pad_token_id}, expected {tokenizer.vocab_size} (the first id "
            "after the SentencePiece vocabulary, as OpenVLA)"
        )
    # save_pretrained writes init_kwargs: keep the legacy Metaspace behaviour in exported copies.
    tokenizer.init_kwargs.update(legacy=True, add_bos_token=True, add_eos_token=False)
    log.debug(
        "Loaded text tokenizer %s from %s (vocab %d + %s)",
        type(tokenizer).__name__,
        source,
        tokenizer.vocab_size,
        PAD_TOKEN,
    )
    return tokenizer


def sentencepiece_vocab_and_merges(model_file: str | Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE vocabulary (piece → id) and merges of a SentencePiece BPE model, merges ordered as SentencePiece
    applies them: by the score of the merged piece (highest first), ties by the piece's id, then by the ids of the
    left and right parts. Every split of a piece into two vocabulary pieces is a merge."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    size = processor.get_piece_size()
    vocab = {processor.id_to_piece(i): i for i in range(size)}
    ranked = []
    for piece, piece_id in vocab.items():
        if processor.is_control(piece_id) or processor.is_unknown(piece_id) or processor.is_byte(piece_id):
            continue
        score = processor.get_score(piece_id)
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, piece_id, vocab[left], vocab[right], left, right))
    ranked.sort(key=lambda item: item[:4])
    return vocab, [(left, right) for *_, left, right in ranked]


def sentencepiece_space_id(tokenizer: Any) -> int:
    """Id of the lone "▁" piece (29871 for Llama-2, 28705 for Mistral v1) that ``predict_action`` appends."""
    token_id = tokenizer.convert_tokens_to_ids("▁")
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"{type(tokenizer).__name__}: the vocabulary has no lone '▁' piece")
    return int(token_id)
