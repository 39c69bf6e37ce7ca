"""The one policy path: what ``/act`` feeds the model equals what training fed it, the transform a model directory
records, and ``Policy.act``'s chunk execution per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hf_fixtures import tiny_vla

from openvla.policy import ModelTransform, Policy

EMBEDDED = "libero_embedded"
RAW_SIZE = 64  # the camera's resolution; the tiny model reads 112 px


def _processor(config):
    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.text_tokenizer import load_text_tokenizer

    return PrismaticProcessor(PrismaticImageProcessor.from_vla_config(config), load_text_tokenizer("mistral-v1"))


@pytest.fixture(scope="module")
def embedded_rlds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ``libero_embedded`` RLDS dataset (JPEG frames at 64 px, as the converter writes them)."""
    from data_fixtures import demo_actions, write_libero_hdf5

    from openvla.config import ConvertConfig
    from openvla.data.convert import convert_dataset

    root = tmp_path_factory.mktemp("embedded-policy")
    demos = [{"actions": demo_actions(4, seed=i), "offset": 5 * i} for i in range(4)]
    write_libero_hdf5(root / "raw" / "pick_demo.hdf5", "pick up the black bowl", demos, size=RAW_SIZE)
    convert_dataset(root / "raw", root / "rlds", ConvertConfig(dataset_name=EMBEDDED, drop_noops=False))
    return root / "rlds"


def _stored_frames(data_dir: Path, split: str) -> list[np.ndarray]:
    """The camera frames as stored in RLDS (decoded, at their own resolution), in file order."""
    from openvla.data.loader import open_builder, resolve_split

    builder = open_builder(data_dir, EMBEDDED)
    episodes = builder.as_dataset(split=resolve_split(builder, split, False), shuffle_files=False)
    return [step["observation"]["image"] for ep in episodes for step in ep["steps"].as_numpy_iterator()]


def _training_frames(data_dir: Path, statistics: dict, size: int, split: str) -> list[np.ndarray]:
    """The training pipeline's frames for the same split: no augmentation, no shuffling, in order."""
    from openvla.data.loader import make_dataset

    frames = make_dataset(
        data_dir, EMBEDDED, statistics=statistics, train=False, image_size=size, shuffle_buffer=1,
        image_augmentation=False, seed=0, split=split, num_parallel_calls=1, num_parallel_reads=1,
    )  # fmt: skip
    return [np.asarray(f["observation"]["image_primary"])[-1] for f in frames.as_numpy_iterator()]


def test_act_feeds_the_model_the_pixels_training_fed_it(embedded_rlds):
    """A client sends the raw 64 px camera frame; the model reads exactly the training frame (lanczos resize to
    112 px) with the random crop replaced by its centre crop, through the same processor."""
    from openvla.data import compute_dataset_statistics
    from openvla.data.image_ops import center_crop_resize
    from openvla.serve.client import ActClient
    from openvla.serve.server import BackgroundServer

    statistics = {EMBEDDED: compute_dataset_statistics(str(embedded_rlds), EMBEDDED)}
    model = tiny_vla(seed=3)
    model.config.image_augmentation = True  # trained with crop augmentation: inference takes the centre crop
    policy = Policy(model, _processor(model.config))
    size = policy.image_size
    assert size != RAW_SIZE and policy.transform.center_crop

    raw = _stored_frames(embedded_rlds, "train")
    trained = _training_frames(embedded_rlds, statistics, size, "train")
    assert len(raw) == len(trained) >= 12 and raw[0].shape == (RAW_SIZE, RAW_SIZE, 3)

    seen: list[np.ndarray] = []
    original = model.generate_action_tokens

    def recording(input_ids, pixel_values, *args, **kwargs):
        seen.append(pixel_values.detach().cpu().numpy().copy())
        return original(input_ids, pixel_values, *args, **kwargs)

    model.generate_action_tokens = recording
    with BackgroundServer(policy) as server, ActClient(server.url) as client:
        for frame in raw[:12]:
            client.act(frame, "pick up the black bowl", unnorm_key=EMBEDDED)
    assert len(seen) == 12
    processor = policy.image_processor
    for got, frame in zip(seen, trained[:12], strict=True):
        expected = processor.apply_transform(center_crop_resize(frame).numpy()).numpy()
        np.testing.assert_array_equal(got[0], expected)
    # and the crop matters: without it the pixels differ (the test would catch a missing centre crop)
    assert not np.array_equal(seen[0][0], processor.apply_transform(trained[0]).numpy())


def test_exported_model_records_its_transform_and_the_policy_reads_it(tmp_path):
    from openvla.hf.export import export_hf

    model = tiny_vla(seed=1)
    model.config.image_augmentation = True
    source = tmp_path / "merged"
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    export_hf(source, tmp_path / "tiny-hf")
    config = json.loads((tmp_path / "tiny-hf" / "config.json").read_text())
    assert config["image_augmentation"] is True and config["image_resize_method"] == "lanczos3"
    policy = Policy.from_pretrained(tmp_path / "tiny-hf", device="cpu", dtype="float32")
    assert policy.transform == ModelTransform(image_size=112, center_crop=True, resize_method="lanczos3")
    assert Policy(policy.model, policy.processor, center_crop=False).transform.center_crop is False  # override


def test_transform_of_an_official_config_without_the_keys_is_resize_only():
    from types import SimpleNamespace

    transform = ModelTransform.from_config(SimpleNamespace(image_sizes=[224, 224]))
    assert transform == ModelTransform(224, center_crop=False)
    with pytest.raises(ValueError, match="image_resize_method 'bicubic'"):
        ModelTransform(224, resize_method="bicubic")
    with pytest.raises(ValueError, match="uint8 H×W×3"):
        transform(np.zeros((8, 8), np.uint8))


def test_act_executes_chunks_per_session_and_matches_predict():
    from serve_fixtures import chunked_tiny_vla

    model = chunked_tiny_vla(seed=2, chunk=4)
    policy = Policy(model, _processor(model.config), unnorm_key=EMBEDDED, execution="open_loop")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(6)]
    state = rng.normal(size=model.config.proprio_dim)
    obs = [{"image": f, "instruction": "open the drawer", "proprio": state} for f in frames]
    chunk = policy.predict([frames[0]], ["open the drawer"], [state]).chunk_actions[0]
    got = [policy.act(o, session="a") for o in obs[:4]]
    assert policy.queries == 1  # open loop: one model call for the chunk's 4 actions
    np.testing.assert_array_equal(np.stack(got), chunk)
    assert all(a.dtype == np.float32 and a.shape == (model.config.action_dim,) for a in got)
    policy.act(obs[4], session="b")  # another session has its own executor
    assert policy.queries == 2
    policy.act(obs[4], session="a")  # session a's chunk is used up: a new query
    assert policy.queries == 3
    policy.reset("a")
    policy.act({**obs[5], "instruction": "open the drawer"}, session="a")
    assert policy.queries == 4  # reset drops the queued actions
    policy.set_execution("chunk")
    assert policy.act(obs[0]).shape == (4, model.config.action_dim)
