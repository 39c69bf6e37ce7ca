"""VLABatchTransform and PaddedCollator: the exact training ids, label masking, padding, chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openvla.actions import ActionTokenizer
from openvla.model.batching import ActionTokenMismatchError, PaddedCollator
from openvla.model.vla import IGNORE_INDEX
from tests.model_fixtures import fake_frame, mistral_tokenizer, tiny_batch_transform


def test_training_ids_are_prompt_space_actions_eos_and_only_those_are_labelled():
    frame = fake_frame(0, "Pick up the Black Bowl")
    item = tiny_batch_transform()(frame)
    tok = mistral_tokenizer()
    prompt_ids = tok("In: What action should the robot take to pick up the black bowl?\nOut:").input_ids
    action_ids = ActionTokenizer(32000, 256).encode(frame["action"][0, 0]).tolist()
    assert item["input_ids"].tolist() == [*prompt_ids, 28705, *action_ids, 2]  # BOS … "Out:" "▁" a1..a7 </s>
    labels = item["labels"].tolist()
    n = len(labels)
    for t in range(n):
        assert labels[t] == (item["input_ids"][t].item() if t >= n - 8 else IGNORE_INDEX), t
    assert item["pixel_values"].shape == (6, 112, 112) and item["dataset_name"] == "libero_embedded"


def test_without_stop_token_prediction_eos_is_not_labelled():
    transform = tiny_batch_transform()
    transform.predict_stop_token = False
    labels = transform(fake_frame(1, "open the drawer"))["labels"]
    assert labels[-1] == IGNORE_INDEX and (labels[-8:-1] != IGNORE_INDEX).all()


def test_chunked_actions_and_history_window_use_the_current_action():
    frame = fake_frame(2, "open the drawer", chunk=8, window=2)
    item = tiny_batch_transform()(frame)
    current = frame["action"][-1, 0]
    assert item["input_ids"][-8:-1].tolist() == ActionTokenizer(32000, 256).encode(current).tolist()
    assert item["actions"].shape == (1, 7)  # a one-step model keeps the current action of the chunk
    np.testing.assert_array_equal(item["actions"].numpy(), frame["action"][-1, :1])
    # a K = 8 model decoded token by token learns all 56 action tokens of the current step's chunk, then </s>
    transform = tiny_batch_transform()
    transform.action_chunk = 8
    item = transform(frame)
    chunk_ids = ActionTokenizer(32000, 256).encode(frame["action"][-1]).reshape(-1)
    assert item["input_ids"][-57:-1].tolist() == chunk_ids.tolist()
    assert (item["labels"][:-57] == IGNORE_INDEX).all() and item["labels"][-57:].tolist() == item["input_ids"][
        -57:
    ].tolist()
    np.testing.assert_array_equal(item["actions"].numpy(), frame["action"][-1])


def test_collator_right_pads_and_masks():
    transform = tiny_batch_transform()
    items = [
        transform(fake_frame(i, text)) for i, text in enumerate(["go", "put the bowl on the plate next to the box"])
    ]
    batch = PaddedCollator(pad_token_id=32000)(items)
    short, long_ = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert batch["input_ids"].shape == (2, long_) and short < long_
    assert (batch["input_ids"][0, short:] == 32000).all() and (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].tolist() == [True] * short + [False] * (long_ - short)
    assert batch["attention_mask"][1].all()
    assert batch["pixel_values"].shape == (2, 6, 112, 112) and batch["actions"].shape == (2, 1, 7)
    assert batch["dataset_names"] == ["libero_embedded"] * 2
    truncated = PaddedCollator(pad_token_id=32000, model_max_length=10)(items)
    assert truncated["input_ids"].shape == (2, 10)


def test_a_tokenizer_that_merges_action_pieces_is_caught():
    transform = tiny_batch_transform()
    transform.action_text = lambda ids: "hello"  # simulate a decode that does not re-encode to the action ids
    with pytest.raises(ActionTokenMismatchError, match="expected the action ids"):
        transform(fake_frame(3, "go"))


def test_flat_keys_are_accepted():
    frame = fake_frame(4, "go")
    flat = {
        "observation/image_primary": frame["observation"]["image_primary"],
        "action": frame["action"],
        "task/language_instruction": frame["task"]["language_instruction"],
        "dataset_name": frame["dataset_name"],
    }
    torch.testing.assert_close(tiny_batch_transform()(flat)["input_ids"], tiny_batch_transform()(frame)["input_ids"])
