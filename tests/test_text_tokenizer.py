"""The text tokenizer (DESIGN §3): OpenVLA's settings, and action ids that survive the training prompt exactly.

Checked with the Mistral v1 SentencePiece model (always available: it ships in the mistral-common wheel) and with
the real Llama-2 one from ../shared/data (skipped when absent). For both, every one of the 256 action ids is a single
character that no vocabulary piece merges with a neighbouring action character or with "▁", so no edge case needs
handling: a prompt followed by any 7 action pieces re-encodes to exactly those 7 ids.
"""

from __future__ import annotations

import numpy as np
import pytest

from openvla.actions import ActionTokenizer
from openvla.model.prompts import build_action_prompt, build_training_prompt
from openvla.model.text_tokenizer import load_text_tokenizer, sentencepiece_space_id

INSTRUCTION = "Put the black bowl ON the plate"
ACTION_IDS = range(31744, 32000)


@pytest.fixture(scope="module")
def mistral():
    return load_text_tokenizer("mistral-v1")


@pytest.fixture(params=["mistral", "llama2"])
def any_tokenizer(request, mistral):
    if request.param == "mistral":
        return mistral, 28705
    path = request.getfixturevalue("llama2_tokenizer_path")
    return load_text_tokenizer(str(path)), 29871


def test_openvla_settings(any_tokenizer):
    tok, space_id = any_tokenizer
    assert tok.vocab_size == 32000 and len(tok) == 32001
    assert tok.pad_token == "<PAD>" and tok.pad_token_id == 32000
    assert (tok.bos_token_id, tok.eos_token_id) == (1, 2)
    assert tok.padding_side == "right" and tok.model_max_length == 2048
    assert sentencepiece_space_id(tok) == space_id


def test_prompt_encodes_to_bos_and_pieces_ending_without_the_space_piece(any_tokenizer):
    tok, space_id = any_tokenizer
    ids = tok(build_action_prompt(INSTRUCTION)).input_ids
    assert ids[0] == 1 and 2 not in ids and space_id not in ids
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["▁In", ":"]
    assert tok.convert_ids_to_tokens(ids[-2:]) == ["Out", ":"]
    assert tok.decode(ids, skip_special_tokens=True) == build_action_prompt(INSTRUCTION)


def test_every_action_id_is_one_character_that_reencodes_to_itself(any_tokenizer):
    tok, space_id = any_tokenizer
    base = tok(build_action_prompt(INSTRUCTION)).input_ids
    pieces = [tok.decode([i]) for i in ACTION_IDS]
    assert all(len(p) == 1 and not p.isspace() for p in pieces)
    for token_id, piece in zip(ACTION_IDS, pieces, strict=True):
        ids = tok(build_training_prompt(INSTRUCTION, piece)).input_ids
        assert ids == [*base, space_id, token_id, 2], (token_id, piece)
    # No vocabulary piece is made of several action characters or of "▁" + an action character, so neighbours
    # never merge in any order (an exhaustive check over all pairs, done once: 65,536/65,536 re-encode exactly).
    chars = set(pieces)
    merged = [p for p in tok.get_vocab() if len(p) > 1 and all(c in chars for c in p.removeprefix("▁"))]
    assert merged == []


def test_random_actions_reencode_exactly_after_the_prompt(any_tokenizer):
    tok, space_id = any_tokenizer
    action_tokenizer = ActionTokenizer(tok.vocab_size)
    base = tok(build_action_prompt(INSTRUCTION)).input_ids
    actions = np.random.default_rng(0).uniform(-1.1, 1.1, size=(500, 7))
    texts = [build_training_prompt(INSTRUCTION, tok.decode(action_tokenizer.encode(a))) for a in actions]
    encoded = tok(texts).input_ids
    for action, ids in zip(actions, encoded, strict=True):
        expected = action_tokenizer.encode(action).tolist()
        assert ids == [*base, space_id, *expected, 2]
        assert np.abs(action_tokenizer.decode(np.array(ids[-8:-1])) - np.clip(action, -1, 1)).max() <= 1 / 255 + 1e-6


def test_save_pretrained_copy_keeps_the_behaviour(tmp_path, mistral):
    from transformers import AutoTokenizer

    mistral.save_pretrained(tmp_path)
    again = load_text_tokenizer(str(tmp_path))
    plain = AutoTokenizer.from_pretrained(str(tmp_path))
    text = build_training_prompt(INSTRUCTION, mistral.decode(list(range(31990, 31997)))) + " after"
    expected = mistral(text).input_ids
    assert again(text).input_ids == expected and plain(text).input_ids == expected  # "▁after": legacy kept
    assert plain.pad_token_id == 32000 and plain.padding_side == "right"


def test_unknown_spec_names_the_choices(tmp_path):
    with pytest.raises(FileNotFoundError, match="mistral-v1"):
        load_text_tokenizer("meta-llama/Llama-2-7b-hf")
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json or tokenizer\.model"):
        load_text_tokenizer(str(tmp_path))


def test_ids_are_sentencepieces_own_including_runs_of_spaces(any_tokenizer):
    """Merges in SentencePiece's order (as OpenVLA's tokenizer.json has them): the ids equal SentencePiece's own
    encoding, runs of spaces included (transformers 5's converter merges "▁▁" first and differs there)."""
    import sentencepiece

    tok, space_id = any_tokenizer
    model_file = _model_file(space_id)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    texts = [
        build_action_prompt("  stack   the cups  "),
        "a  b",
        "two  spaces and   three",
        "tabs\tand\nnewlines  ",
        build_training_prompt(INSTRUCTION, tok.decode(list(range(31990, 31997)))).removesuffix("</s>"),
    ]
    for text in texts:
        assert tok(text).input_ids == [1, *processor.encode(text)], text
    assert tok("a  b").input_ids == [1, tok.convert_tokens_to_ids("▁a"), space_id, tok.convert_tokens_to_ids("▁b")]


def _model_file(space_id: int):
    from conftest import shared_path

    from openvla.model.text_tokenizer import mistral_v1_model_path

    return mistral_v1_model_path() if space_id == 28705 else shared_path("llama2-tokenizer", "tokenizer.model")
