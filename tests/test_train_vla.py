"""The tiny VLA through the training loop: it memorizes a handful of episodes, and what the loop saves is a complete
HF directory that reloads to the same outputs with ``norm_stats`` filled."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from openvla.train.checkpoint import CheckpointManager, resolve_checkpoint
from openvla.train.distributed import init_distributed, shutdown_distributed
from openvla.train.loop import Checkpointer, LoopConfig, fit
from openvla.train.metrics import MetricsRecorder
from openvla.train.optim import build_optimizer, build_scheduler
from openvla.train.strategy import wrap_model
from openvla.train.vla import (
    STATISTICS_FILE,
    VLAObjective,
    batch_size_of,
    build_components,
    freeze_unused_parameters,
    write_hf_directory,
)

STATS = {
    "toy_episodes": {
        "action": {
            "mean": [0.0] * 7,
            "std": [1.0] * 7,
            "max": [1.0] * 7,
            "min": [-1.0] * 7,
            "q01": [-1.0] * 7,
            "q99": [1.0] * 7,
            "mask": [True] * 6 + [False],
        },
        "proprio": {k: [0.0] * 7 for k in ("mean", "std", "max", "min", "q01", "q99")},
        "num_transitions": 4,
        "num_trajectories": 2,
    }
}


@pytest.fixture(scope="module")
def tiny_config():
    from openvla.model import get_model_config

    return get_model_config("tiny")


@pytest.fixture(scope="module")
def components(tiny_config, tmp_path_factory):
    from openvla.actions import ActionTokenizer, save_action_tokenizer

    directory = tmp_path_factory.mktemp("tokenizer")
    save_action_tokenizer(ActionTokenizer(tiny_config.base_vocab_size), directory)
    return build_components(tiny_config, "mistral-v1", directory)


def episode_frames(n_episodes: int = 2, frames_per_episode: int = 2, seed: int = 0) -> list[dict]:
    """Frames shaped like the data pipeline's: one instruction per episode, a distinct image and action per step."""
    rng = np.random.default_rng(seed)
    frames = []
    for ep in range(n_episodes):
        scene = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        for t in range(frames_per_episode):
            image = scene.copy()
            image[t * 28 : (t + 1) * 28] = rng.integers(0, 256, (28, 112, 3), dtype=np.uint8)
            frames.append(
                {
                    "observation": {"image_primary": image[None], "pad_mask": np.ones(1, bool)},
                    "action": rng.uniform(-1, 1, (1, 1, 7)).astype(np.float32),
                    "task": {"language_instruction": f"put bowl {ep} on the plate".encode()},
                    "dataset_name": b"toy_episodes",
                }
            )
    return frames


@pytest.fixture
def one_process():
    """A one-process group on one thread (OpenMP threads spin badly when the 2 cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    yield info
    shutdown_distributed()
    torch.set_num_threads(threads)


def test_tiny_vla_memorizes_a_handful_of_episodes_and_saves_a_reloadable_hf_directory(
    tiny_config, components, one_process, tmp_path
):
    from openvla.model import OpenVLAForActionPrediction, build_vla

    batch = components.collator([components.transform(f) for f in episode_frames()])
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].ne(-100).sum(dim=1).tolist() == [8] * 4
    torch.manual_seed(0)
    model = build_vla(tiny_config, attn_implementation="sdpa")
    freeze_unused_parameters(model)
    model = wrap_model(model, "fsdp", one_process, wrap_classes=model.fsdp_wrap_classes())
    optimizer = build_optimizer(model, lr=2e-3, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, "constant", total_steps=60)
    checkpointer = Checkpointer(
        CheckpointManager(tmp_path / "run"),
        one_process,
        lambda d, state: write_hf_directory(d, model, state, components, STATS),
        "fp",
    )
    recorder = MetricsRecorder(None, tmp_path / "run" / "history.jsonl", tmp_path / "plots")
    recorder.resume_from(0)
    summary = fit(
        model,
        optimizer,
        scheduler,
        itertools.repeat(batch),
        VLAObjective(components.action_tokenizer, one_process.device),
        LoopConfig(steps=60, save_every=0),
        one_process,
        checkpointer=checkpointer,
        recorder=recorder,
        batch_size_of=batch_size_of,
        on_step_end=lambda step, m: m["action_accuracy"] > 0.9,  # stop (and save) once memorized
    )
    assert summary["final_action_accuracy"] > 0.9, summary
    assert summary["final_l1"] < 0.05
    assert summary["final_loss"] < recorder.rows[0]["loss"] / 3

    # the checkpoint is a complete HF directory: reload it and get the same logits; norm_stats are filled
    directory = resolve_checkpoint(tmp_path / "run")
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "preprocessor_config.json",
                 STATISTICS_FILE, "action_tokenizer/action_tokenizer.json", "trainer_state.pt"):  # fmt: skip
        assert (directory / name).is_file(), name
    assert json.loads((directory / "config.json").read_text())["norm_stats"] == STATS
    reloaded = OpenVLAForActionPrediction.from_pretrained(directory).eval()
    model.eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, atol=1e-4, rtol=1e-4)
    assert (tmp_path / "plots" / "action_accuracy.csv").exists() is False  # only written on request
    recorder.write_plots()
    rows = (tmp_path / "plots" / "action_accuracy.csv").read_text().splitlines()
    assert rows[0] == "step,action_accuracy" and len(rows) == summary["steps"] + 1


def test_metrics_recorder_writes_only_the_curves_it_recorded(tmp_path):
    from openvla.train.metrics import MetricsRecorder

    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "action_accuracy.csv").write_text("step,action_accuracy\n")  # stale, from a tokens-head run
    recorder = MetricsRecorder(None, tmp_path / "history.jsonl", plots)
    for step in (1, 2):
        recorder.record(step, {"loss": 0.5 / step, "l1": 0.5 / step, "lr": 1e-3})  # the L1 head: no accuracy
    written = recorder.write_plots()
    assert sorted(p.name for p in written) == ["l1.csv", "loss.csv", "lr.csv"]
    assert sorted(p.name for p in plots.iterdir()) == ["l1.csv", "loss.csv", "lr.csv"]
    assert (plots / "l1.csv").read_text().splitlines() == ["step,l1", "1,0.5", "2,0.25"]


def test_activation_checkpointing_and_vision_but_last_freeze_give_the_same_training(
    tiny_config, components, one_process
):
    from openvla.model import build_vla
    from openvla.train.optim import apply_freeze

    batch = components.collator([components.transform(f) for f in episode_frames(1, 2)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
    losses = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_vla(tiny_config, attn_implementation="sdpa")
        apply_freeze(model, "vision_but_last")
        freeze_unused_parameters(model)
        vit = model.vision_backbone.featurizer
        assert vit.blocks[2].attn.qkv.weight.requires_grad  # the last block whose output is used
        assert not vit.blocks[1].attn.qkv.weight.requires_grad and not vit.blocks[3].attn.qkv.weight.requires_grad
        model = wrap_model(model, "fsdp", one_process, wrap_classes=model.fsdp_wrap_classes(),
                           activation_checkpointing=checkpointing)  # fmt: skip
        optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.0)
        losses[checkpointing] = []
        for _ in range(2):
            loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[checkpointing].append(float(loss))
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    assert losses[False][1] < losses[False][0]
