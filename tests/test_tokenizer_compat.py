"""Exports that OpenVLA's own stack reads identically, and the other way round (issue 15, DESIGN §3, §10).

Fast tests check the files we write (the schema tokenizers 0.19 parses, the tokenizer_config keys transformers 4.40
reads as we mean them) and that our stack reads them back with the same ids. The ``slow`` test builds (once, cached
under ~/.cache/openvla-pipeline/) a side environment with transformers 4.40.1 + tokenizers 0.19.1 + sentencepiece,
and compares its ids — fast ``AutoTokenizer`` / ``LlamaTokenizerFast`` and slow ``LlamaTokenizer`` — with ours on
prompts with and without action tokens (every one of the 256), for the Mistral v1 and the real Llama-2 models; it
also lets 4.40 write tokenizer files and checks that ours reads those with the same ids, and parses the export's
config.json / preprocessor_config.json there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from side_venv import openvla_stack_python

from openvla.hf.tokenizer_files import TOKENIZER_CONFIG_KEYS, portable_tokenizer_json, write_tokenizer_files
from openvla.model.prompts import build_action_prompt, build_training_prompt
from openvla.model.text_tokenizer import load_text_tokenizer, mistral_v1_model_path

SIDE_SCRIPT = Path(__file__).with_name("side_tokenize.py")
INSTRUCTIONS = [
    "Put the black bowl ON the plate",
    "open the top drawer and put the bowl inside",
    "pick up the café mug, then place it 2.5 cm left",
    "  stack   the cups  ",
    "wipe the table.",
]
ACTION_IDS = list(range(31744, 32000))


def prompt_set(tokenizer) -> list[str]:
    """Inference prompts (pure and Vicuna), training prompts with each of the 256 action tokens and with random
    7-token actions, plus odd texts around special tokens and spaces."""
    texts = [build_action_prompt(i) for i in INSTRUCTIONS]
    texts += [build_action_prompt(i, "vicuna-v15-7b") for i in INSTRUCTIONS[:2]]
    pieces = [tokenizer.decode([i]) for i in ACTION_IDS]
    texts += [build_training_prompt(INSTRUCTIONS[i % len(INSTRUCTIONS)], p) for i, p in enumerate(pieces)]
    rng = np.random.default_rng(0)
    for row in rng.integers(31744, 32000, size=(40, 7)):
        texts.append(build_training_prompt(INSTRUCTIONS[0], tokenizer.decode(row.tolist())))
    texts += [build_action_prompt(INSTRUCTIONS[0]) + " ", "a</s>b c", "<s> hello", "", " leading space", "x\n\ny"]
    return texts


def export_tokenizer(tokenizer, directory: Path, spm_file: Path) -> Path:
    write_tokenizer_files(tokenizer, directory, spm_file, extra={"processor_class": "PrismaticProcessor"})
    return directory


@pytest.fixture(scope="module")
def mistral():
    return load_text_tokenizer("mistral-v1")


@pytest.fixture(scope="module")
def mistral_export(mistral, tmp_path_factory):
    return export_tokenizer(mistral, tmp_path_factory.mktemp("tok-mistral"), mistral_v1_model_path())


# -- fast: the files themselves --------------------------------------------------------------------------------------


def test_tokenizer_json_has_merges_as_strings_and_the_same_pipeline(mistral_export, tmp_path, mistral):
    data = json.loads((mistral_export / "tokenizer.json").read_text())
    merges = data["model"]["merges"]
    assert len(merges) == 58980 and all(isinstance(m, str) and m.count(" ") == 1 for m in merges)
    # SentencePiece's order (score of the merged piece): "▁ t" first, the whitespace runs (score −1e9) last.
    assert merges[:3] == ["▁ t", "i n", "e r"] and merges.index("▁ ▁") > 58000
    assert data["pre_tokenizer"] == {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "always",
        "split": False,
    }
    assert {t["id"]: t["content"] for t in data["added_tokens"]} == {0: "<unk>", 1: "<s>", 2: "</s>", 32000: "<PAD>"}
    # What a plain save_pretrained writes (pairs) differs only in the merges' form.
    mistral.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "tokenizer.json").read_text())
    assert raw["model"]["merges"][0] == ["▁", "t"]
    assert portable_tokenizer_json(raw) == data


def test_tokenizer_config_is_what_transformers_4_40_reads_as_we_mean(mistral_export):
    config = json.loads((mistral_export / "tokenizer_config.json").read_text())
    assert set(config) <= set(TOKENIZER_CONFIG_KEYS)
    assert "add_prefix_space" not in config  # null there drops the "▁" prefix in 4.40's slow→fast conversion
    assert config["legacy"] is True and config["add_bos_token"] is True and config["add_eos_token"] is False
    assert config["tokenizer_class"] == "LlamaTokenizer" and config["pad_token"] == "<PAD>"
    assert config["added_tokens_decoder"]["32000"] == {
        "content": "<PAD>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }
    assert sorted(config["added_tokens_decoder"]) == ["0", "1", "2", "32000"]
    assert json.loads((mistral_export / "special_tokens_map.json").read_text())["pad_token"] == "<PAD>"
    assert (mistral_export / "tokenizer.model").read_bytes() == mistral_v1_model_path().read_bytes()


def test_portable_json_refuses_what_the_string_form_cannot_hold():
    with pytest.raises(ValueError, match="contains a space"):
        portable_tokenizer_json({"model": {"type": "BPE", "merges": [["a b", "c"]]}})
    with pytest.raises(ValueError, match="expected a BPE model"):
        portable_tokenizer_json({"model": {"type": "Unigram"}})


def test_our_stack_reads_the_export_with_identical_ids(mistral_export, mistral):
    from transformers import AutoTokenizer

    texts = prompt_set(mistral)
    expected = mistral(texts).input_ids
    assert load_text_tokenizer(str(mistral_export))(texts).input_ids == expected
    plain = AutoTokenizer.from_pretrained(str(mistral_export))
    assert plain(texts).input_ids == expected and plain.pad_token_id == 32000


# -- slow: OpenVLA's pinned stack in a side environment --------------------------------------------------------------


def run_side(python: Path, request: dict) -> dict:
    result = subprocess.run(
        [str(python), str(SIDE_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "0",
        },
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


@pytest.fixture(params=["mistral", "llama2"])
def model_and_space(request, mistral):
    if request.param == "mistral":
        return mistral, mistral_v1_model_path(), 28705
    path = request.getfixturevalue("llama2_tokenizer_path")
    return load_text_tokenizer(str(path)), path, 29871


@pytest.mark.slow
def test_openvla_stack_tokenizes_our_export_exactly_as_we_do(model_and_space, tmp_path):
    python = openvla_stack_python()
    tokenizer, spm_file, space_id = model_and_space
    ours_dir = export_tokenizer(tokenizer, tmp_path / "ours", spm_file)
    texts = prompt_set(tokenizer)
    expected = tokenizer(texts).input_ids

    theirs_dir = tmp_path / "theirs"
    # Our files without tokenizer.json: 4.40 then converts tokenizer.model using our tokenizer_config.json (the
    # path on which a null add_prefix_space used to drop the "▁" prefix: "In" 797 instead of "▁In" 512).
    no_json_dir = tmp_path / "ours-without-tokenizer-json"
    shutil.copytree(ours_dir, no_json_dir)
    (no_json_dir / "tokenizer.json").unlink()
    request = {"texts": texts, "write": {"spm": str(spm_file), "out": str(theirs_dir)}}
    answer = run_side(python, {**request, "load": [str(ours_dir), str(theirs_dir), str(no_json_dir)]})
    assert answer["versions"] == {"transformers": "4.40.1", "tokenizers": "0.19.1"}
    ids, info = answer["ids"][str(ours_dir)], answer["info"][str(ours_dir)]
    official_ids = answer["ids"][str(theirs_dir)]
    assert (
        info["AutoTokenizer"]["class"] == "LlamaTokenizerFast" and info["LlamaTokenizer"]["class"] == "LlamaTokenizer"
    )
    for cls in ("AutoTokenizer", "LlamaTokenizerFast", "LlamaTokenizer"):
        assert info[cls]["pad_token_id"] == 32000 and info[cls]["len"] == 32001
        assert (info[cls]["bos_token_id"], info[cls]["eos_token_id"]) == (1, 2)
        assert info[cls]["add_bos_token"] is True and info[cls]["add_eos_token"] is False
        assert info[cls]["space_id"] == space_id and info[cls]["padding_side"] == "right"
    for cls in ("AutoTokenizer", "LlamaTokenizerFast"):  # the fast classes (OpenVLA's processor): our ids, all texts
        for text, theirs, ours in zip(texts, ids[cls], expected, strict=True):
            assert theirs == ours, (cls, text)
    # Only a text (segment) that starts with whitespace differs, and only where SentencePiece itself (the slow class,
    # and the Prepend normalizer of the files 4.40 writes) adds its dummy "▁" where the Metaspace step of ours and of
    # transformers 5 does not: OpenVLA's prompts never start with whitespace.
    leading = [t for t in texts if re.search(r"(^|<s>|</s>)\s", t)]  # a text segment that starts with whitespace
    assert leading == ["<s> hello", " leading space"]
    converted_ids = answer["ids"][str(no_json_dir)]
    for cls in ("AutoTokenizer", "LlamaTokenizerFast", "LlamaTokenizer"):
        for source in (ids, official_ids, converted_ids):
            mismatch = [t for t, a, b in zip(texts, source[cls], expected, strict=True) if a != b]
            assert set(mismatch) <= set(leading), (cls, mismatch)
    assert ids["LlamaTokenizer"][texts.index(" leading space")][:2] == [1, space_id]
    # The same merges, in the same order, as the tokenizer.json OpenVLA's stack writes from the SentencePiece model.
    ours_json = json.loads((ours_dir / "tokenizer.json").read_text())
    theirs_json = json.loads((theirs_dir / "tokenizer.json").read_text())
    assert ours_json["model"]["merges"] == theirs_json["model"]["merges"]
    assert ours_json["model"]["vocab"] == theirs_json["model"]["vocab"]
    # The facts the model relies on, in their stack: "In" gets the prefix space; actions sit after "▁" then EOS.
    first = ids["AutoTokenizer"][0]
    assert first[:3] == tokenizer(build_action_prompt(INSTRUCTIONS[0])).input_ids[:3]
    assert tokenizer.convert_ids_to_tokens(first[1]) == "▁In"
    assert converted_ids["AutoTokenizer"][0][1] == first[1] == (512 if space_id == 29871 else 560)
    for k, token_id in enumerate(ACTION_IDS):
        assert ids["AutoTokenizer"][7 + k][-3:] == [space_id, token_id, 2]
        assert ids["LlamaTokenizer"][7 + k][-3:] == [space_id, token_id, 2]
    assert info["AutoTokenizer"]["decoded"][0] == build_action_prompt(INSTRUCTIONS[0])

    # The other direction: files written by OpenVLA's stack read here with our ids.
    assert set(t for t, a, b in zip(texts, answer["written"]["ids"], expected, strict=True) if a != b) <= set(leading)
    theirs = load_text_tokenizer(str(theirs_dir))
    assert theirs(texts).input_ids == expected and theirs.pad_token_id == 32000


@pytest.mark.slow
def test_openvla_stack_parses_the_exported_config_and_preprocessor(tmp_path):
    from hf_fixtures import tiny_vla

    from openvla.hf.export import export_hf

    python = openvla_stack_python()
    model = tiny_vla(seed=0)
    source = tmp_path / "merged"
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    out = tmp_path / "tiny-hf"
    export_hf(source, out, max_shard_size="5GB", dtype="auto", tokenizer="mistral-v1")

    texts = prompt_set(load_text_tokenizer("mistral-v1"))[:10]
    answer = run_side(python, {"load": [str(out)], "texts": texts, "config_dir": str(out)})
    assert answer["ids"][str(out)]["AutoTokenizer"] == load_text_tokenizer(str(out))(texts).input_ids
    config = answer["config"]
    assert config["model_type"] == "openvla" and config["pad_token_id"] == 32000 and config["n_action_bins"] == 256
    assert config["text_vocab_size"] == 32064 and config["text_hidden_size"] == model.config.text_config.hidden_size
    assert config["norm_stats_keys"] == sorted(model.config.norm_stats)
    assert config["image_processor_type"] == "PrismaticImageProcessor"
    assert config["means"] == [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]]
