"""The `/act` server with the real tiny model: an exported directory loaded once (as ``openvla serve`` does),
answers equal to calling ``predict_action`` directly, alone and batched with concurrent requests."""

from __future__ import annotations

import json
import threading

import httpx
import json_numpy
import numpy as np
import pytest
from hf_fixtures import images, tiny_vla
from PIL import Image

from openvla.config import ServeConfig
from openvla.serve.client import ActClient, ActError
from openvla.serve.server import BackgroundServer

INSTRUCTIONS = ["pick up the black bowl", "put the bowl on the plate", "open the drawer", "close the microwave"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from openvla.actions.tokenizer import QuantileActionTokenizer, save_action_tokenizer
    from openvla.hf.export import export_hf
    from openvla.serve.policy import load_hf_predictor

    model = tiny_vla(seed=1)
    source = tmp_path_factory.mktemp("merged")
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    fitted = np.random.default_rng(0).uniform(-1, 1, size=(500, 7)) ** 3  # actions crowded near 0
    save_action_tokenizer(QuantileActionTokenizer.fit(fitted, vocab_size=32000), source / "action_tokenizer")
    export = tmp_path_factory.mktemp("models") / "tiny-hf"
    export_hf(source, export)
    assert (export / "action_tokenizer").is_dir()
    return load_hf_predictor(export, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def server(predictor):
    with BackgroundServer(predictor, ServeConfig(max_batch=4, batch_wait_ms=20.0)) as srv:
        yield srv


def _direct(predictor, image: np.ndarray, instruction: str, unnorm_key: str) -> np.ndarray:
    """What a user gets calling the model directly (OpenVLA's README recipe)."""
    from openvla.model.prompts import build_action_prompt

    prompt = build_action_prompt(instruction, predictor.model.config.llm_backbone_id)
    inputs = predictor.processor(prompt, Image.fromarray(image).convert("RGB"))
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
