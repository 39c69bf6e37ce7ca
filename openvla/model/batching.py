"""Training batches: a data-pipeline frame → prompt ids + labels + pixel values, and the right-padding collator.

``VLABatchTransform`` builds OpenVLA's training text (DESIGN §3): the question turn, the action pieces and
``</s>``, tokenized with BOS; every label is −100 except the last ``action_dim + 1`` (the action tokens and
``</s>``). The action pieces are the text of the action token ids; after tokenization the sequence must end with
exactly those ids and EOS, which is checked for every sample (it holds for the Llama-2 and Mistral v1 tokenizers).

Action chunks (``action_chunk`` K, frame action [window, K, D]): token by token, the text holds the K·D action
pieces of the chunk (K = 1 is OpenVLA's current action only). With ``parallel_decoding`` the text is the prompt
only (the model appends "▁" and the slots) and the targets are ``action_labels`` (the K·D token ids) and
``actions`` (the normalized chunk, for the L1 head). ``use_proprio`` adds ``proprio`` (the normalized state of the
current step). Observation history (window > 1): the current (last) frame of the window is used.

Several cameras (``cameras``, e.g. ("primary", "wrist"); OFT): each camera's ``image_<role>`` goes through the image
processor and the results are stacked on channels in that order, [3·n·N, S, S] (DESIGN §13).

FAST action tokens (``bins.scheme: fast``, a ``FastActionTokenizer``; token by token only): the chunk (K, D) is
encoded into a variable number of FAST ids and the sequence is built from ids, not re-tokenized text: the inference
prompt (BOS + question turn) + "▁" (what ``predict_action`` appends) + the FAST ids + ``</s>``, labels only on the
FAST ids and ``</s>``. The prefix is exactly the uniform scheme's (whose text re-tokenizes to prompt + "▁" + ids),
and building from ids means no BPE piece can be merged with its neighbours by the text tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from openvla.model.prompts import action_question
from openvla.model.vla import IGNORE_INDEX


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return _text(value.reshape(-1)[0]) if value.size else ""
    return str(value)


def _get(frame: dict, *path: str) -> Any:
    node: Any = frame
    for key in path:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, dict) and "/".join(path) in frame:  # flat "observation/image_primary" keys
            return frame["/".join(path)]
        else:
            raise KeyError(f"VLABatchTransform: frame has no {'/'.join(path)!r} (keys: {sorted(frame)})")
    return node


class ActionTokenMismatchError(ValueError):
    """The tokenized training prompt does not end with the action ids + EOS (a tokenizer that merges pieces)."""


class VLABatchTransform:
    """Frame (the data pipeline's element as numpy) → ``{input_ids, labels, pixel_values, dataset_name, actions}``.

    ``prompt_builder_fn`` is a zero-argument callable returning a fresh prompt builder (e.g.
    ``functools.partial(get_prompt_builder, config.llm_backbone_id)``).
    """

    def __init__(
        self,
        text_tokenizer: Any,
        action_tokenizer: Any,
        image_processor: Any,
        prompt_builder_fn: Callable[[], Any],
        predict_stop_token: bool = True,
        action_chunk: int = 1,
        parallel_decoding: bool = False,
        use_proprio: bool = False,
        cameras: Sequence[str] = ("primary",),
    ) -> None:
        if not cameras:
            raise ValueError("VLABatchTransform: cameras must name at least one camera role")
        self.cameras = tuple(cameras)
        self.text_tokenizer = text_tokenizer
        self.action_tokenizer = action_tokenizer
        self.image_processor = image_processor
        self.prompt_builder_fn = prompt_builder_fn
        self.predict_stop_token = predict_stop_token
        self.action_chunk = action_chunk
        self.parallel_decoding = parallel_decoding
        self.use_proprio = use_proprio
        self.fast = getattr(action_tokenizer, "scheme", None) == "fast"
        if self.fast and parallel_decoding:
            raise ValueError(
                "FAST action tokens (bins.scheme=fast) are a variable-length sequence decoded token by token: use "
                "model.action_head=tokens with model.parallel_decoding=false"
            )
        if self.fast and action_tokenizer.chunk != action_chunk:
            raise ValueError(
                f"the FAST tokenizer encodes chunks of {action_tokenizer.chunk} actions, the model predicts "
                f"{action_chunk}: refit it with bins.fast_chunk = data.chunk"
            )
        self._space_id: int | None = None

    def action_text(self, action_ids: np.ndarray) -> str:
        """The text whose tokens are ``action_ids`` (OpenVLA decodes the ids and re-tokenizes the string)."""
        return self.text_tokenizer.decode([int(i) for i in action_ids])

    def tokenize(self, instruction: str, action: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt + action tokens + EOS → (input_ids, labels), both int64 [L]."""
        action_ids = np.asarray(self.action_tokenizer.encode(action), dtype=np.int64).reshape(-1)
        builder = self.prompt_builder_fn()
        builder.add_turn("human", action_question(instruction))
        builder.add_turn("gpt", self.action_text(action_ids))
        ids = list(self.text_tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids)
        expected = [*action_ids.tolist(), self.text_tokenizer.eos_token_id]
        if ids[-len(expected) :] != expected:
            raise ActionTokenMismatchError(
                f"training prompt for {instruction!r} ends with {ids[-len(expected) :]}, expected the action ids + "
                f"EOS {expected}: this tokenizer does not re-encode action pieces one to one"
            )
        input_ids = torch.tensor(ids, dtype=torch.long)
        labels = input_ids.clone()
        labels[: -len(expected)] = IGNORE_INDEX
        if not self.predict_stop_token:
            labels[-1] = IGNORE_INDEX
        return input_ids, labels

    def space_token_id(self) -> int:
        """The id of the lone SentencePiece "▁" (what follows ``Out:`` before the action tokens)."""
        if self._space_id is None:
            space = self.text_tokenizer.convert_tokens_to_ids("▁")
            if space is None or space == self.text_tokenizer.unk_token_id:
                raise ValueError("the text tokenizer has no '▁' piece to put between the prompt and FAST tokens")
            self._space_id = int(space)
        return self._space_id

    def tokenize_fast(self, instruction: str, chunk: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt + "▁" + the FAST ids of ``chunk`` (K, D) + EOS → (input_ids, labels), both int64 [L]."""
        prompt = self.tokenize_prompt(instruction).tolist()
        if prompt[-1] != self.space_token_id():
            prompt.append(self.space_token_id())
        action_ids = self.action_tokenizer.encode_chunk(chunk).tolist()
        input_ids = torch.tensor([*prompt, *action_ids, self.text_tokenizer.eos_token_id], dtype=torch.long)
        labels = input_ids.clone()
        labels[: len(prompt)] = IGNORE_INDEX
        if not self.predict_stop_token:
            labels[-1] = IGNORE_INDEX
        return input_ids, labels

    def tokenize_prompt(self, instruction: str) -> torch.Tensor:
        """The inference prompt (question turn, no answer) with BOS, int64 [L] (parallel decoding)."""
        builder = self.prompt_builder_fn()
        builder.add_turn("human", action_question(instruction))
        return torch.tensor(self.text_tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids)

    def pixel_values(self, frame: dict[str, Any]) -> torch.Tensor:
        """The current frame of every camera through the image processor, stacked on channels: [3·n·N, S, S]."""
        tensors = []
        for camera in self.cameras:
            image = np.asarray(_get(frame, "observation", f"image_{camera}"))
            if image.ndim == 4:  # [window, H, W, 3] → the current (last) frame
                image = image[-1]
            if image.size == 0 or image.ndim != 3:
                raise ValueError(
                    f"VLABatchTransform: camera {camera!r} has no image in this frame (shape {image.shape}); the "
                    f"dataset lacks it: set data.cameras to cameras every dataset of the mixture has"
                )
            tensors.append(self.image_processor.apply_transform(image))
        return torch.cat(tensors, dim=0)

    def __call__(self, frame: dict[str, Any]) -> dict[str, Any]:
        actions = np.asarray(frame["action"], dtype=np.float32)
        if actions.ndim == 3:  # [window, chunk, D] → the current step's chunk
            actions = actions[-1]
        if actions.ndim == 1:
            actions = actions[None]
        if len(actions) < self.action_chunk:
            raise ValueError(
                f"VLABatchTransform: frames carry {len(actions)} actions, the model predicts chunks of "
                f"{self.action_chunk}: set data.chunk to the model's action_chunk"
            )
        actions = actions[: self.action_chunk]
        instruction = _text(_get(frame, "task", "language_instruction"))
        out: dict[str, Any] = {}
        if self.parallel_decoding:
            input_ids = self.tokenize_prompt(instruction)
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            action_ids = np.asarray(self.action_tokenizer.encode(actions), dtype=np.int64).reshape(-1)
            out["action_labels"] = torch.from_numpy(action_ids)
        elif self.fast:
            input_ids, labels = self.tokenize_fast(instruction, actions)
        else:
            input_ids, labels = self.tokenize(instruction, actions.reshape(-1))
        out.update(
            input_ids=input_ids,
            labels=labels,
            pixel_values=self.pixel_values(frame),
            dataset_name=_text(frame.get("dataset_name", b"")),
            actions=torch.from_numpy(actions.copy()),  # (K, D) normalized
        )
        if self.use_proprio:
            proprio = np.asarray(_get(frame, "observation", "proprio"), dtype=np.float32)
            out["proprio"] = torch.from_numpy(proprio[-1] if proprio.ndim == 2 else proprio)
        return out


class PaddedCollator:
    """Right-pads ``input_ids`` with ``pad_token_id`` and ``labels`` with −100; ``attention_mask = ids != pad``."""

    def __init__(self, pad_token_id: int, model_max_length: int = 2048, padding_side: str = "right") -> None:
        if padding_side != "right":
            raise ValueError(
                f"PaddedCollator: only right padding is supported (forward puts BOS first), got {padding_side!r}"
            )
        self.pad_token_id = pad_token_id
        self.model_max_length = model_max_length

    def __call__(self, instances: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ids = [inst["input_ids"][: self.model_max_length] for inst in instances]
        labels = [inst["labels"][: self.model_max_length] for inst in instances]
        input_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id)
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "labels": torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
            "attention_mask": input_ids.ne(self.pad_token_id),
            "pixel_values": torch.stack([inst["pixel_values"] for inst in instances]),
        }
        if "dataset_name" in instances[0]:
            batch["dataset_names"] = [inst["dataset_name"] for inst in instances]
        for key in ("actions", "action_labels", "proprio"):
            if key in instances[0]:
                batch[key] = torch.stack([inst[key] for inst in instances])
        return batch
