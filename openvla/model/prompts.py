"""Prompt builders: the exact strings the LLM saw in training and must see at inference (DESIGN §3).

OpenVLA (Prismatic) formats a conversation per LLM backbone:

* ``PurePromptBuilder`` (base LLMs such as ``llama2-7b-pure``, openvla-7b): human turn ``In: {msg}\\nOut: ``,
  assistant turn ``{msg}</s>``. Inference prompt: ``In: What action should the robot take to {instruction}?\\nOut:``.
* ``VicunaV15PromptBuilder`` (``vicuna-v15-*``, the ``v01`` models): the system prompt, a space, then
  ``USER: {msg} ASSISTANT: `` and ``{msg}</s>``.

Each message is stripped; an empty assistant message becomes one space. ``get_prompt()`` drops a leading ``<s>``
(the tokenizer adds BOS) and trailing whitespace — so an inference prompt ends in ``Out:`` and the model's
``predict_action`` appends the lone "▁" piece, while a training prompt is ``… Out: <action chars></s>``.
The instruction is lower-cased by the caller's template (``action_question``), as OpenVLA does.
"""

from __future__ import annotations

import difflib

SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
BOS, EOS = "<s>", "</s>"


def action_question(instruction: str) -> str:
    """OpenVLA's human message for a robot instruction (lower-cased, trailing whitespace/punctuation kept)."""
    return f"What action should the robot take to {instruction.lower()}?"


class PromptBuilder:
    """A growing conversation (alternating human / gpt turns) rendered in one backbone's format."""

    def __init__(self, system_prompt: str | None = None) -> None:
        self.system_prompt = system_prompt
        self.prompt = ""
        self.turn_count = 0

    def wrap_human(self, message: str) -> str:
        raise NotImplementedError

    def wrap_gpt(self, message: str) -> str:
        return f"{message if message != '' else ' '}{EOS}"

    def _first_turn_prefix(self) -> str:
        return ""

    def add_turn(self, role: str, message: str) -> str:
        """Append one turn (``human`` first, then alternating with ``gpt``); returns the text it added."""
        expected = "human" if self.turn_count % 2 == 0 else "gpt"
        if role != expected:
            raise ValueError(f"turn {self.turn_count} must come from {expected!r}, got {role!r}")
        message = message.replace("<image>", "").strip()
        if role == "human":
            wrapped = self.wrap_human(message)
            if self.turn_count == 0:
                wrapped = self._first_turn_prefix() + wrapped
        else:
            wrapped = self.wrap_gpt(message)
        self.prompt += wrapped
        self.turn_count += 1
        return wrapped

    def get_potential_prompt(self, message: str) -> str:
        """The prompt if ``message`` were the next human turn (the conversation is left unchanged)."""
        prefix = self._first_turn_prefix() if self.turn_count == 0 else ""
        return (
            (self.prompt + prefix + self.wrap_human(message.replace("<image>", "").strip())).removeprefix(BOS).rstrip()
        )

    def get_prompt(self) -> str:
        """The conversation so far, without a leading BOS (the tokenizer adds it) and trailing whitespace."""
        return self.prompt.removeprefix(BOS).rstrip()


class PurePromptBuilder(PromptBuilder):
    """Base (non-chat) LLMs: ``In: {msg}\\nOut: `` / ``{msg}</s>`` — openvla-7b's format."""

    def wrap_human(self, message: str) -> str:
        return f"In: {message}\nOut: "


class VicunaV15PromptBuilder(PromptBuilder):
    """Vicuna v1.5 chat: system prompt, then ``USER: {msg} ASSISTANT: `` / ``{msg}</s>``."""

    def __init__(self, system_prompt: str | None = None) -> None:
        super().__init__(SYSTEM_PROMPT if system_prompt is None else system_prompt)

    def _first_turn_prefix(self) -> str:
        return (self.system_prompt or "").strip() + " "

    def wrap_human(self, message: str) -> str:
        return f"USER: {message} ASSISTANT: "


# Backbone ids OpenVLA/Prismatic ship with each format; other ids follow the suffix rule in get_prompt_builder.
_PURE_IDS = ("llama2-7b-pure", "llama2-13b-pure", "mistral-v0.1-7b-pure")
_VICUNA_IDS = ("vicuna-v15-7b", "vicuna-v15-13b")
PROMPT_BUILDERS: dict[str, type[PromptBuilder]] = {
    **dict.fromkeys(_PURE_IDS, PurePromptBuilder),
    **dict.fromkeys(_VICUNA_IDS, VicunaV15PromptBuilder),
}


def get_prompt_builder(llm_backbone_id: str) -> PromptBuilder:
    """A fresh prompt builder for ``llm_backbone_id``.

    Known ids map as OpenVLA's; otherwise an id ending in ``-pure`` (e.g. our ``tiny-mistral-pure``) gets the pure
    format and one starting with ``vicuna-v15`` the Vicuna format. Anything else is an error naming the known ids.
    """
    cls = PROMPT_BUILDERS.get(llm_backbone_id)
    if cls is None:
        if llm_backbone_id.endswith("-pure") or llm_backbone_id == "pure":
            cls = PurePromptBuilder
        elif llm_backbone_id.startswith("vicuna-v15") or llm_backbone_id == "vicuna":
            cls = VicunaV15PromptBuilder
        else:
            close = difflib.get_close_matches(llm_backbone_id, list(PROMPT_BUILDERS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"no prompt format for llm_backbone_id={llm_backbone_id!r}{hint} Known: {', '.join(PROMPT_BUILDERS)}; "
                "ids ending in '-pure' use the pure format, ids starting with 'vicuna-v15' the Vicuna one"
            )
    return cls()


def build_action_prompt(instruction: str, llm_backbone_id: str = "llama2-7b-pure") -> str:
    """The inference prompt for ``instruction`` (e.g. ``In: What action should the robot take to …?\\nOut:``)."""
    builder = get_prompt_builder(llm_backbone_id)
    builder.add_turn("human", action_question(instruction))
    return builder.get_prompt()


def build_training_prompt(instruction: str, action_text: str, llm_backbone_id: str = "llama2-7b-pure") -> str:
    """The training text: the question turn, then ``action_text`` (the decoded action pieces) and ``</s>``."""
    builder = get_prompt_builder(llm_backbone_id)
    builder.add_turn("human", action_question(instruction))
    builder.add_turn("gpt", action_text)
    return builder.get_prompt()
