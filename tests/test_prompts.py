"""Prompt builders (DESIGN §3): the exact strings openvla-7b (pure) and the v01 models (Vicuna v1.5) saw."""

from __future__ import annotations

import pytest

from openvla.model.prompts import (
    SYSTEM_PROMPT,
    PurePromptBuilder,
    VicunaV15PromptBuilder,
    build_action_prompt,
    build_training_prompt,
    get_prompt_builder,
)


def test_openvla_7b_inference_prompt_is_exact():
    assert build_action_prompt("Put the Bowl on the plate") == (
        "In: What action should the robot take to put the bowl on the plate?\nOut:"
    )
    assert build_action_prompt("open the drawer", "llama2-7b-pure") == (
        "In: What action should the robot take to open the drawer?\nOut:"
    )


def test_pure_training_prompt_has_the_action_text_and_eos():
    assert build_training_prompt("Pick up the cup", "abc") == (
        "In: What action should the robot take to pick up the cup?\nOut: abc</s>"
    )


def test_vicuna_prompts_are_exact():
    assert SYSTEM_PROMPT == (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    assert build_action_prompt("Pick up the cup", "vicuna-v15-7b") == (
        f"{SYSTEM_PROMPT} USER: What action should the robot take to pick up the cup? ASSISTANT:"
    )
    assert build_training_prompt("Pick up the cup", "xyz", "vicuna-v15-7b") == (
        f"{SYSTEM_PROMPT} USER: What action should the robot take to pick up the cup? ASSISTANT: xyz</s>"
    )


def test_builder_conversation_rules():
    builder = PurePromptBuilder()
    assert builder.add_turn("human", "  <image>\nHello ") == "In: Hello\nOut: "
    assert builder.get_potential_prompt("ignored") == "In: Hello\nOut: In: ignored\nOut:"
    with pytest.raises(ValueError, match="must come from 'gpt'"):
        builder.add_turn("human", "again")
    assert builder.add_turn("gpt", "") == " </s>"  # an empty answer is one space
    builder.add_turn("human", "Next")
    assert builder.get_prompt() == "In: Hello\nOut:  </s>In: Next\nOut:"
    vicuna = VicunaV15PromptBuilder()
    assert vicuna.get_potential_prompt("Hi") == f"{SYSTEM_PROMPT} USER: Hi ASSISTANT:"
    assert (
        VicunaV15PromptBuilder(system_prompt="Be brief. ").get_potential_prompt("Hi") == "Be brief. USER: Hi ASSISTANT:"
    )


@pytest.mark.parametrize(
    ("backbone", "cls"),
    [
        ("llama2-7b-pure", PurePromptBuilder),
        ("mistral-v0.1-7b-pure", PurePromptBuilder),
        ("tiny-mistral-pure", PurePromptBuilder),
        ("vicuna-v15-7b", VicunaV15PromptBuilder),
        ("vicuna-v15-13b", VicunaV15PromptBuilder),
    ],
)
def test_get_prompt_builder_by_backbone(backbone, cls):
    assert type(get_prompt_builder(backbone)) is cls


def test_unknown_backbone_suggests_a_known_one():
    with pytest.raises(ValueError, match="did you mean 'llama2-7b-pure'"):
        get_prompt_builder("llama2-7b-pur")
