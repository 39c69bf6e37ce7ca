"""The `/act` server with the real tiny model: an exported directory loaded once (as ``openvla serve`` does),
answers equal to calling ``predict_action`` directly, alone and batched with concurrent requests; and the tiny
OpenVLA-OFT model (4-action chunks, parallel decoding, L1 head, proprio) served the same way."""

from __future__ import annotations

import json
import threading

import httpx
import json_numpy
import numpy as np
import pytest
from hf_fixtures import images, tiny_vla
from PIL import Image
from serve_fixtures import chunked_tiny_vla

from openvla.config import ServeConfig
from openvla.serve.client import ActClient, ActError
from openvla.serve.server import BackgroundServer

INSTRUCTIONS = ["pick up the black bowl", "put the bowl on the plate", "open the drawer", "close the microwave"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from openvla.actions.tokenizer import QuantileActionTokenizer, save_action_tokenizer
    from openvla.hf.export import export_hf
    from openvla.policy import Policy

    model = tiny_vla(seed=1)
    source = tmp_path_factory.mktemp("merged")
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    fitted = np.random.default_rng(0).uniform(-1, 1, size=(500, 7)) ** 3  # actions crowded near 0
    save_action_tokenizer(QuantileActionTokenizer.fit(fitted, vocab_size=32000), source / "action_tokenizer")
    export = tmp_path_factory.mktemp("models") / "tiny-hf"
    export_hf(source, export)
    assert (export / "action_tokenizer").is_dir()
    return Policy.from_pretrained(export, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def server(predictor):
    with BackgroundServer(predictor, ServeConfig(max_batch=4, batch_wait_ms=20.0)) as srv:
        yield srv


def _direct(predictor, image: np.ndarray, instruction: str, unnorm_key: str) -> np.ndarray:
    """What a user gets calling the model directly (OpenVLA's README recipe) on the frame training would have seen."""
    from openvla.model.prompts import build_action_prompt

    prompt = build_action_prompt(instruction, predictor.model.config.llm_backbone_id)
    inputs = predictor.processor(prompt, Image.fromarray(predictor.transform(image)))
    return predictor.model.predict_action(**inputs, unnorm_key=unnorm_key, do_sample=False)


def test_server_answers_what_predict_action_gives(server, predictor):
    image = images(1, seed=5)[0]
    with ActClient(server.url) as client:
        action = client.act(image, "pick up the black bowl", unnorm_key="bridge_orig")
        health = client.health()
    expected = _direct(predictor, image, "pick up the black bowl", "bridge_orig")
    assert action.shape == (7,) and action.dtype == np.float32
    np.testing.assert_array_equal(action, expected)
    assert health["unnorm_keys"] == ["libero_embedded", "bridge_orig"]
    # the fitted quantile bins travelled through the export: actions decode with them, not OpenVLA's uniform bins
    assert type(predictor.model.action_tokenizer).__name__ == "QuantileActionTokenizer"


def test_batched_prediction_equals_one_at_a_time(predictor):
    imgs = images(4, seed=6)
    batched = predictor.predict_batch(imgs, INSTRUCTIONS, "libero_embedded")
    singles = [
        predictor.predict_batch([im], [text], "libero_embedded")[0] for im, text in zip(imgs, INSTRUCTIONS, strict=True)
    ]
    np.testing.assert_array_equal(np.stack(batched), np.stack(singles))
    assert len({a.tobytes() for a in singles}) > 1  # different inputs, different actions


def test_concurrent_requests_get_their_own_actions(server, predictor):
    imgs = images(4, seed=7)
    expected = [_direct(predictor, im, text, "libero_embedded") for im, text in zip(imgs, INSTRUCTIONS, strict=True)]
    results: dict[int, np.ndarray] = {}
    errors: list[str] = []

    def send(i: int) -> None:
        try:
            with ActClient(server.url) as client:
                for _ in range(3):
                    results[i] = client.act(imgs[i], INSTRUCTIONS[i], unnorm_key="libero_embedded")
                    if not np.array_equal(results[i], expected[i]):
                        errors.append(f"request {i}: {results[i]} != {expected[i]}")
        except Exception as err:  # reported by the assertion below
            errors.append(f"request {i}: {err!r}")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert httpx.get(f"{server.url}/health").json()["errors"] == 0


def test_real_model_server_rejects_bad_input_and_keeps_serving(server, predictor):
    with ActClient(server.url) as client:
        with pytest.raises(ActError, match="unknown unnorm_key 'fractal'"):
            client.act(images(1)[0], "go", unnorm_key="fractal")
        with pytest.raises(ActError, match="pass 'unnorm_key'"):
            client.act(images(1)[0], "go")
        bad = json_numpy.dumps({"image": np.zeros((8, 8), np.uint8), "instruction": "go", "unnorm_key": "bridge_orig"})
        response = httpx.post(f"{server.url}/act", content=bad)
        assert response.status_code == 422 and "shape (H, W, 3)" in response.json()["error"]
        image = images(1, seed=9)[0]
        np.testing.assert_array_equal(
            client.act(image, "stack the cups", unnorm_key="bridge_orig"),
            _direct(predictor, image, "stack the cups", "bridge_orig"),
        )


# -- an OpenVLA-OFT model: (K, D) chunks, the robot state ----------------------------------------------------------
@pytest.fixture(scope="module")
def chunked_predictor(tmp_path_factory):
    from openvla.hf.export import export_hf
    from openvla.policy import Policy

    model = chunked_tiny_vla(seed=2, chunk=4)
    source = tmp_path_factory.mktemp("merged-oft")
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    export = tmp_path_factory.mktemp("models") / "tiny-oft-hf"
    export_hf(source, export)
    return Policy.from_pretrained(export, device="cpu", dtype="float32")


def _direct_oft(predictor, image: np.ndarray, instruction: str, unnorm_key: str, proprio: np.ndarray) -> np.ndarray:
    from openvla.model.prompts import build_action_prompt

    prompt = build_action_prompt(instruction, predictor.model.config.llm_backbone_id)
    inputs = predictor.processor(prompt, Image.fromarray(predictor.transform(image)))
    return predictor.model.predict_action(**inputs, unnorm_key=unnorm_key, do_sample=False, proprio=proprio)


def test_chunked_model_server_answers_predict_actions_chunk(chunked_predictor):
    config = chunked_predictor.model.config
    assert (config.action_chunk, config.action_head, config.parallel_decoding, config.use_proprio) == (
        4,
        "l1",
        True,
        True,
    )
    imgs = images(2, seed=11)
    states = [np.linspace(-1.5, 1.5, 8), np.linspace(1.5, -1.5, 8)]
    with BackgroundServer(chunked_predictor, ServeConfig(execution="chunk")) as srv, ActClient(srv.url) as client:
        chunk = client.act(imgs[0], "pick up the black bowl", unnorm_key="bridge_orig", proprio=states[0])
        other_state = client.act(imgs[0], "pick up the black bowl", unnorm_key="bridge_orig", proprio=states[1])
        with pytest.raises(ActError) as info:
            client.act(imgs[0], "pick up the black bowl", unnorm_key="bridge_orig")
        health = client.health()
    expected = _direct_oft(chunked_predictor, imgs[0], "pick up the black bowl", "bridge_orig", states[0])
    assert chunk.shape == (4, 7) and chunk.dtype == np.float32
    np.testing.assert_array_equal(chunk, expected)
    assert not np.array_equal(chunk, other_state)  # the state is an input of the model
    assert info.value.status == 422 and "'proprio'" in info.value.message
    assert (health["action_chunk"], health["proprio_dim"]) == (4, 8)


def test_chunked_model_batched_prediction_equals_one_at_a_time(chunked_predictor):
    imgs = images(3, seed=12)
    states = [np.full(8, v) for v in (-0.5, 0.25, 1.0)]
    texts = INSTRUCTIONS[:3]
    batched = chunked_predictor.predict_batch(imgs, texts, "libero_embedded", proprios=states)
    singles = [
        chunked_predictor.predict_batch([im], [text], "libero_embedded", proprios=[st])[0]
        for im, text, st in zip(imgs, texts, states, strict=True)
    ]
    assert batched[0].shape == (4, 7)
    np.testing.assert_allclose(np.stack(batched), np.stack(singles), rtol=1e-5, atol=1e-6)


def test_chunked_model_open_loop_answers_the_chunk_one_action_at_a_time(chunked_predictor):
    imgs = images(5, seed=13)
    state = np.linspace(-1.0, 1.0, 8)
    config = ServeConfig(execution="open_loop")
    with BackgroundServer(chunked_predictor, config) as srv, ActClient(srv.url) as client:
        actions = [
            client.act(im, "open the drawer", unnorm_key="libero_embedded", proprio=state, session="ep", reset=(i == 0))
            for i, im in enumerate(imgs)
        ]
        health = client.health()
    first = _direct_oft(chunked_predictor, imgs[0], "open the drawer", "libero_embedded", state)
    second = _direct_oft(chunked_predictor, imgs[4], "open the drawer", "libero_embedded", state)
    assert all(a.shape == (7,) for a in actions)
    np.testing.assert_allclose(np.stack(actions[:4]), first, rtol=1e-6)
    np.testing.assert_allclose(actions[4], second[0], rtol=1e-6)
    assert (health["requests"], health["from_chunk"]) == (2, 3)  # two model calls for five actions
