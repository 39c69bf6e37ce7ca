"""Tokenizer files that OpenVLA's pinned stack reads exactly as ours does (DESIGN §3, §10).

Users run OpenVLA with transformers 4.40.1 + tokenizers 0.19.1. Two things in what ``save_pretrained`` writes with
our newer stack break there, silently or loudly:

* ``tokenizer.json``: tokenizers ≥ 0.20 serializes BPE merges as pairs (``["▁", "t"]``); 0.19 only reads the
  ``"▁ t"`` string form and fails with "data did not match any variant of untagged enum ModelWrapper". We write
  the string form, which every tokenizers version reads (a SentencePiece piece never contains a plain space, so the
  form is unambiguous). The rest of the file (Metaspace with ``prepend_scheme`` "always", ``split`` false, the
  byte-fallback decoder) is a schema 0.19 already reads.
* ``tokenizer_config.json``: transformers 5 writes ``"add_prefix_space": null``. transformers 4.40 passes it to the
  slow-to-fast converter, whose Llama normalizer prepends "▁" only when that attribute is truthy, so a fallback
  conversion (no readable tokenizer.json) loses the prefix space: "In:" → "In" (797) instead of "▁In" (512). Any
  non-null value forces that conversion instead, so the key is left out: 4.40's default is True, as ours.
  ``legacy`` is written true: OpenVLA's tokenizer.json prepends "▁" to every text segment (also after a special
  token), which is what 4.40's slow ``LlamaTokenizer`` does with ``legacy=True`` and our stack with the same flag.
  Keys 4.40 does not know (``backend``, ``extra_special_tokens`` as a list, ``is_local``, ...) are dropped.

The merges themselves follow SentencePiece: ``openvla.model.text_tokenizer`` orders them by the score of the merged
piece, as SentencePiece applies them and as transformers 4.40's converter (which made OpenVLA's tokenizer.json) wrote
them; transformers 5 orders them differently (the "▁▁" whitespace pieces, score −1e9, first), which changes the ids of
texts with runs of spaces. What still differs from 4.40's own files: a text segment that starts with whitespace (the
Metaspace step of transformers 5 adds no second "▁" there, SentencePiece does); OpenVLA's prompts never do.

tests/test_tokenizer_compat.py checks the result against transformers 4.40.1 / tokenizers 0.19.1 in a side
environment (ids of prompts with and without every action token, fast and slow classes, both directions).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from openvla.io import atomic_write_bytes, atomic_write_json

# tokenizer_config.json keys that transformers 4.40's Llama tokenizers understand and that we write.
TOKENIZER_CONFIG_KEYS = (
    "add_bos_token",
    "add_eos_token",
    "added_tokens_decoder",
    "bos_token",
    "clean_up_tokenization_spaces",
    "eos_token",
    "legacy",
    "model_max_length",
    "pad_token",
    "padding_side",
    "processor_class",
    "sp_model_kwargs",
    "tokenizer_class",
    "unk_token",
    "use_default_system_prompt",
)


def portable_tokenizer_json(data: dict[str, Any]) -> dict[str, Any]:
    """``tokenizer.json`` content in the schema tokenizers 0.19 reads (and every later version): BPE merges as
    ``"left right"`` strings. Raises ``ValueError`` for a model this cannot represent (a merge piece with a space)."""
    out = json.loads(json.dumps(data))  # deep copy
    model = out.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"tokenizer.json: expected a BPE model (Llama SentencePiece), got {model.get('type')!r}")
    merges = []
    for merge in model.get("merges", []):
        if isinstance(merge, str):
            merges.append(merge)
            continue
        left, right = merge
        if " " in left or " " in right:
            raise ValueError(f"tokenizer.json: merge {merge!r} contains a space; the string form cannot hold it")
        merges.append(f"{left} {right}")
    model["merges"] = merges
    return out


def portable_tokenizer_config(tokenizer: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``tokenizer_config.json`` for OpenVLA's settings that transformers 4.40 and 5 read alike (see module doc)."""
    special = [tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token]
    decoder = {
        str(tokenizer.convert_tokens_to_ids(tok)): {
            "content": tok,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for tok in sorted(set(special), key=tokenizer.convert_tokens_to_ids)
    }
    data: dict[str, Any] = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": tokenizer.bos_token,
        "clean_up_tokenization_spaces": False,
        "eos_token": tokenizer.eos_token,
        "legacy": True,
        "model_max_length": int(tokenizer.model_max_length),
        "pad_token": tokenizer.pad_token,
        "padding_side": tokenizer.padding_side,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": tokenizer.unk_token,
        "use_default_system_prompt": False,
    }
    data.update(extra or {})
    unknown = sorted(set(data) - set(TOKENIZER_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"tokenizer_config.json: keys {unknown} are not read by transformers 4.40")
    return dict(sorted(data.items()))


def write_tokenizer_files(
    tokenizer: Any, directory: str | Path, spm_file: str | Path | None = None, extra: dict[str, Any] | None = None
) -> None:
    """``tokenizer.json`` (portable schema), ``tokenizer_config.json``, ``special_tokens_map.json`` and, when
    given or present, the SentencePiece ``tokenizer.model`` (the slow ``LlamaTokenizer`` reads it) into
    ``directory``. ``extra``: further tokenizer_config keys (e.g. ``processor_class``)."""
    directory = Path(directory)
    tokenizer.save_pretrained(str(directory))
    path = directory / "tokenizer.json"
    if path.is_file():
        data = portable_tokenizer_json(json.loads(path.read_text(encoding="utf-8")))
        text = json.dumps(data, ensure_ascii=False, indent=2)
        atomic_write_bytes(path, text.encode("utf-8"))
    if spm_file is not None and not (directory / "tokenizer.model").is_file():
        shutil.copyfile(spm_file, directory / "tokenizer.model")
    atomic_write_json(directory / "tokenizer_config.json", portable_tokenizer_config(tokenizer, extra))
    special_map = {
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": tokenizer.unk_token,
    }
    atomic_write_json(directory / "special_tokens_map.json", special_map)
