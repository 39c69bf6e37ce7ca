"""The `/act` policy server: request validation, HTTP answers for bad payloads, batching under concurrency.

These tests run a real uvicorn server on a free 127.0.0.1 port with a stand-in predictor (fast); the test that the
real tiny model answers correctly through the server lives in tests/test_serve_model.py.
"""

from __future__ import annotations

import base64
import json
import threading

import httpx
import json_numpy
import numpy as np
import pytest
from serve_fixtures import ChunkPredictor, EchoPredictor

from openvla.config import ServeConfig
from openvla.serve.client import ActClient, ActError
from openvla.serve.payload import PayloadError, parse_body, validate_request
from openvla.serve.server import BackgroundServer

KEYS = ["libero_embedded", "bridge_orig"]


def _image(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def _body(image: np.ndarray, instruction: str | None = "pick up the bowl", **extra) -> bytes:
    payload = {"image": image, **extra}
    if instruction is not None:
        payload["instruction"] = instruction
    return json_numpy.dumps(payload).encode()


@pytest.fixture(scope="module")
def server():
    predictor = EchoPredictor(KEYS)
    with BackgroundServer(predictor, ServeConfig(max_batch=8, batch_wait_ms=2.0)) as srv:
        srv.predictor = predictor
        yield srv


# -- payload validation (no server) -------------------------------------------------------------------------------
def _validate(body: bytes, keys=("libero_embedded",), max_image_bytes: int = 1 << 20, proprio_dim=None):
    return validate_request(
        parse_body(body),
        unnorm_keys=list(keys),
        max_image_bytes=max_image_bytes,
        max_instruction_chars=100,
        proprio_dim=proprio_dim,
    )


def test_valid_payload_decodes_image_exactly():
    image = _image(3)
    req = _validate(_body(image, "  Put the bowl on the plate  "))
    np.testing.assert_array_equal(req.image, image)
    assert req.instruction == "Put the bowl on the plate"
    assert req.unnorm_key is None


def test_openvla_double_encoded_payload_is_accepted():
    image = _image(4)
    inner = json_numpy.dumps({"image": image, "instruction": "open the drawer"})
    req = _validate(json.dumps({"encoded": inner}).encode())
    np.testing.assert_array_equal(req.image, image)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        (b"[1, 2, 3]", 400, "must be a JSON object"),
        (_body(_image().astype(np.float32)), 422, "dtype must be uint8"),
        (_body(_image()[:, :, 0]), 422, "shape (H, W, 3)"),
        (_body(_image()[None]), 422, "shape (H, W, 3)"),
        (_body(np.zeros((0, 10, 3), np.uint8)), 422, "empty"),
        (_body(_image(), None), 422, "missing field 'instruction'"),
        (_body(_image(), "   "), 422, "'instruction' is empty"),
        (_body(_image(), "x" * 101), 422, "more than 100"),
        (json.dumps({"instruction": "go"}).encode(), 422, "missing field 'image'"),
        (json.dumps({"image": [[[0, 0, 0]]], "instruction": "go"}).encode(), 422, "plain JSON list"),
        (_body(_image(), unnorm_key="nope"), 422, "unknown unnorm_key 'nope'"),
        (_body(_image(), unnorm_key=3), 422, "'unnorm_key' must be a string"),
        (_body(np.zeros((1024, 1024, 3), np.uint8)), 413, "more than the limit"),
    ],
)
def test_bad_payloads_raise_payload_error_with_status_and_reason(body, status, fragment):
    with pytest.raises(PayloadError) as info:
        _validate(body)
    assert info.value.status == status
    assert fragment in info.value.message


def test_declared_shape_must_match_data():
    obj = {
        "image": {"__numpy__": base64.b64encode(b"abc").decode(), "dtype": "|u1", "shape": [2, 2, 3]},
        "instruction": "go",
    }
    with pytest.raises(PayloadError, match="has 3 bytes but shape"):
        _validate(json.dumps(obj).encode())
    obj["image"]["dtype"] = "garbage"
    with pytest.raises(PayloadError, match="not a numpy dtype"):
        _validate(json.dumps(obj).encode())
    obj["image"].update(dtype="|u1", __numpy__="@@@@")
    with pytest.raises(PayloadError, match="not valid base64"):
        _validate(json.dumps(obj).encode())


def test_missing_unnorm_key_is_an_error_only_with_several_datasets():
    assert _validate(_body(_image()), keys=KEYS[:1]).unnorm_key is None
    with pytest.raises(PayloadError, match="pass 'unnorm_key', one of libero_embedded, bridge_orig"):
        _validate(_body(_image()), keys=KEYS)


# -- the HTTP server ----------------------------------------------------------------------------------------------
def test_valid_request_returns_that_requests_action(server):
    image = _image(11)
    with ActClient(server.url) as client:
        action = client.act(image, "pick up the bowl", unnorm_key="bridge_orig")
        assert client.health()["status"] == "ok"
    np.testing.assert_array_equal(action, EchoPredictor.expected(image, "pick up the bowl", key_index=1))
    assert action.dtype == np.float32


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (_body(_image().astype(np.float32), unnorm_key="bridge_orig"), 422, "dtype must be uint8"),
        (_body(_image()[:, :, 0], unnorm_key="bridge_orig"), 422, "shape (H, W, 3)"),
        (_body(np.zeros((0, 32, 3), np.uint8), unnorm_key="bridge_orig"), 422, "empty"),
        (b'{"image": garbage', 400, "not valid JSON"),
        (_body(_image(), unnorm_key="fractal"), 422, "this model knows: libero_embedded, bridge_orig"),
        (_body(_image(), None, unnorm_key="bridge_orig"), 422, "missing field 'instruction'"),
        (_body(_image()), 422, "pass 'unnorm_key'"),
    ],
)
def test_bad_requests_get_4xx_with_a_useful_message(server, body, status, fragment):
    response = httpx.post(f"{server.url}/act", content=body, timeout=30)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_50_mb_image_is_refused_with_413(server):
    huge = np.zeros((4096, 4096, 3), np.uint8)  # 50.3 MB decoded, 67 MB as base64
    response = httpx.post(f"{server.url}/act", content=_body(huge, unnorm_key="bridge_orig"), timeout=60)
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]


def test_client_raises_act_error_with_the_server_message(server):
    with ActClient(server.url) as client, pytest.raises(ActError) as info:
        client.act(_image(), "go", unnorm_key="unknown")
    assert info.value.status == 422 and "unknown unnorm_key" in info.value.message


def test_eight_concurrent_clients_200_requests_each_get_their_own_answers(server):
    errors: list[str] = []
    n_clients, n_requests = 8, 200

    def client_loop(cid: int) -> None:
        with ActClient(server.url) as client:
            for i in range(n_requests):
                image = _image(seed=cid * 1000 + i, size=16)
                instruction = f"task {cid} " + "x" * (i % 7)
                try:
                    action = client.act(image, instruction, unnorm_key=KEYS[i % 2])
                    expected = EchoPredictor.expected(image, instruction, key_index=i % 2)
                    if not np.array_equal(action, expected):
                        errors.append(f"client {cid} request {i}: got {action}, expected {expected}")
                except Exception as err:  # collected, the assertion below reports them
                    errors.append(f"client {cid} request {i}: {err!r}")

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = httpx.get(f"{server.url}/health").json()
    assert stats["requests"] >= n_clients * n_requests
    assert stats["errors"] == 0
    assert 1 < stats["max_batch_seen"] <= 8  # concurrent requests were batched, never beyond max_batch


def test_server_still_answers_after_bad_and_concurrent_requests(server):
    httpx.post(f"{server.url}/act", content=b"\x00garbage", timeout=10)
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    image = _image(99)
    with ActClient(server.url) as client:
        np.testing.assert_array_equal(
            client.act(image, "still alive", unnorm_key="libero_embedded"), EchoPredictor.expected(image, "still alive")
        )


def test_model_failure_is_a_500_that_does_not_stop_the_server():
    class Failing(EchoPredictor):
        def predict_batch(self, images, instructions, unnorm_key):
            if instructions[0] == "explode":
                raise RuntimeError("boom")
            return super().predict_batch(images, instructions, unnorm_key)

    with BackgroundServer(Failing(["only"])) as srv, ActClient(srv.url) as client:
        with pytest.raises(ActError) as info:
            client.act(_image(), "explode")
        assert info.value.status == 500 and "boom" in info.value.message
        np.testing.assert_array_equal(client.act(_image(1), "fine"), EchoPredictor.expected(_image(1), "fine"))


def test_openvla_serve_binds_loopback_by_default_and_loads_the_model_once(monkeypatch, tmp_path):
    import uvicorn
    from typer.testing import CliRunner

    from openvla.policy import Policy
    from stages.cli import app

    loads: list[str] = []
    started: dict = {}
    monkeypatch.setattr(Policy, "from_pretrained", lambda path, **kw: loads.append(str(path)) or EchoPredictor())
    monkeypatch.setattr(uvicorn, "run", lambda app_, **kw: started.update(app=app_, **kw))
    params = tmp_path / "params.yaml"
    params.write_text(
        "serve:\n  port: 8123\n  max_batch: 4\n  execution: ensemble\n  ensemble_decay: 0.2\n  max_sessions: 3\n"
    )
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path / "m-hf"), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert loads == [str(tmp_path / "m-hf")]
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    assert started["app"].state.batcher.max_batch == 4
    sessions = started["app"].state.sessions  # serve.execution / ensemble_decay / max_sessions reach the server
    assert (sessions.kind, sessions.decay, sessions.max_sessions) == ("ensemble", 0.2, 3)

    result = CliRunner().invoke(
        app, ["serve", "--model-dir", str(tmp_path), "--params", str(params), "--execution", "chunk"]
    )
    assert result.exit_code == 0, result.output
    assert started["app"].state.sessions is None
    result = CliRunner().invoke(
        app, ["serve", "--model-dir", str(tmp_path), "--params", str(params), "--execution", "closed_loop"]
    )
    assert result.exit_code != 0 and "closed_loop" in result.output

    result = CliRunner().invoke(
        app, ["serve", "--model-dir", str(tmp_path), "--params", str(params), "--host", "0.0.0.0"]
    )
    assert result.exit_code == 0 and started["host"] == "0.0.0.0"


def test_overload_is_answered_503_and_the_server_recovers():
    import time

    class Slow(EchoPredictor):
        def predict_batch(self, images, instructions, unnorm_key):
            time.sleep(0.3)
            return super().predict_batch(images, instructions, unnorm_key)

    statuses: list[int] = []
    lock = threading.Lock()
    with BackgroundServer(Slow(["only"]), ServeConfig(max_batch=1, batch_wait_ms=0.0, max_queue=2)) as srv:

        def send() -> None:
            response = httpx.post(f"{srv.url}/act", content=_body(_image()), timeout=30)
            with lock:
                statuses.append(response.status_code)
            if response.status_code == 503:
                assert "serve.max_queue" in response.json()["error"]

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 3 and 503 in statuses
        assert httpx.get(f"{srv.url}/health").json()["rejected"] == statuses.count(503)
        with ActClient(srv.url) as client:
            np.testing.assert_array_equal(client.act(_image(2), "after"), EchoPredictor.expected(_image(2), "after"))


# -- action chunks: proprio, chunk / open_loop / ensemble execution, sessions ---------------------------------------
def _post(url: str, image: np.ndarray, instruction: str = "pick up the bowl", **fields) -> httpx.Response:
    return httpx.post(f"{url}/act", content=_body(image, instruction, **fields), timeout=30)


def test_proprio_session_and_reset_fields_are_validated():
    req = _validate(_body(_image()))  # an OpenVLA request: defaults, no state
    assert (req.proprio, req.session, req.reset) == (None, "default", False)
    req = _validate(_body(_image(), proprio=[1, 2.5, -3], session="robot-1", reset=True), proprio_dim=3)
    np.testing.assert_array_equal(req.proprio, [1.0, 2.5, -3.0])
    assert req.proprio.dtype == np.float64 and (req.session, req.reset) == ("robot-1", True)
    req = _validate(_body(_image(), proprio=np.array([0.5, 1.5, 2.5], np.float32)), proprio_dim=3)  # json-numpy
    np.testing.assert_array_equal(req.proprio, [0.5, 1.5, 2.5])
    assert _validate(_body(_image(), proprio=[1.0, 2.0])).proprio is None  # a model without proprio ignores it

    bad = [
        (_body(_image()), "missing field 'proprio'"),
        (_body(_image(), proprio=[1.0, 2.0]), "'proprio' has 2 values; this model expects proprio_dim=3"),
        (_body(_image(), proprio=[1.0, float("nan"), 2.0]), "NaN or infinite"),
        (_body(_image(), proprio=[1.0, True, 2.0]), "other than numbers"),
        (_body(_image(), proprio="1,2,3"), "'proprio' must be a list of numbers"),
        (_body(_image(), proprio=np.zeros((1, 3))), "must be 1-D"),
        (_body(_image(), proprio=[1, 2, 3], session=7), "'session' must be a string"),
        (_body(_image(), proprio=[1, 2, 3], session=""), "'session' is empty"),
        (_body(_image(), proprio=[1, 2, 3], reset="yes"), "'reset' must be true or false"),
    ]
    for body, fragment in bad:
        with pytest.raises(PayloadError) as info:
            _validate(body, proprio_dim=3)
        assert info.value.status == 422 and fragment in info.value.message, info.value.message


def test_chunk_mode_answers_the_models_chunk_and_passes_proprio():
    predictor = ChunkPredictor(chunk=4, proprio_dim=3)
    with BackgroundServer(predictor, ServeConfig(execution="chunk")) as srv, ActClient(srv.url) as client:
        image = _image(5)
        chunk = client.act(image, "open the drawer", proprio=np.array([0.5, 1.0, 2.0]), session="s", reset=True)
        assert chunk.shape == (4, 7) and chunk.dtype == np.float32
        np.testing.assert_array_equal(chunk, ChunkPredictor.chunk(image, "open the drawer", 4, proprio=[0.5, 1, 2]))
        assert predictor.calls[-1][1] == "open the drawer"
        np.testing.assert_array_equal(predictor.calls[-1][2], [0.5, 1.0, 2.0])  # the state reached the model

        missing = _post(srv.url, _image(1))
        assert missing.status_code == 422 and "'proprio'" in missing.json()["error"]
        assert "use_proprio" in missing.json()["error"]
        short = _post(srv.url, _image(1), proprio=[1.0])
        assert short.status_code == 422 and "proprio_dim=3" in short.json()["error"]
        health = client.health()
        assert (health["action_chunk"], health["proprio_dim"], health["execution"]) == (4, 3, "chunk")
        assert len(predictor.calls) == 1  # refused requests never reached the model


def _open_loop_episode(predictor: ChunkPredictor, config: ServeConfig, imgs: list[np.ndarray]) -> tuple[list, dict]:
    """One session's actions for ``imgs`` (the first request resets it) and the server's health afterwards."""
    with BackgroundServer(predictor, config) as srv, ActClient(srv.url) as client:
        actions = [client.act(im, "stack the cups", session="ep", reset=(i == 0)) for i, im in enumerate(imgs)]
        return actions, client.health()


def test_open_loop_calls_the_model_once_per_chunk_and_answers_its_rows_in_order():
    k, n = 3, 7
    predictor = ChunkPredictor(chunk=k)
    imgs = [_image(20 + i) for i in range(n)]
    actions, health = _open_loop_episode(predictor, ServeConfig(execution="open_loop"), imgs)
    assert len(predictor.calls) == 3  # requests 0, 3 and 6 ran the model; the others were answered from the chunk
    for i, action in enumerate(actions):
        query = imgs[i - i % k]  # the observation of the request that ran the model for this step
        assert action.shape == (7,) and action.dtype == np.float32
        np.testing.assert_array_equal(action, ChunkPredictor.chunk(query, "stack the cups", k)[i % k])
    assert (health["queries"], health["from_chunk"], health["requests"]) == (3, 4, 3)


def test_open_loop_steps_executes_the_first_actions_of_each_chunk_then_queries_again():
    """``serve.open_loop_steps`` (OpenVLA-OFT's ``num_open_loop_steps``): 2 of every 3-action chunk, then a query."""
    k, steps, n = 3, 2, 6
    predictor = ChunkPredictor(chunk=k)
    imgs = [_image(60 + i) for i in range(n)]
    actions, health = _open_loop_episode(predictor, ServeConfig(execution="open_loop", open_loop_steps=steps), imgs)
    assert (health["execution"], health["open_loop_steps"]) == ("open_loop", steps)  # a client can check it
    assert len(predictor.calls) == 3  # requests 0, 2 and 4 ran the model
    for i, action in enumerate(actions):
        query = imgs[i - i % steps]
        np.testing.assert_array_equal(action, ChunkPredictor.chunk(query, "stack the cups", k)[i % steps])


def test_open_loop_with_a_one_step_model_queries_every_request():
    predictor = EchoPredictor()
    with BackgroundServer(predictor, ServeConfig(execution="open_loop")) as srv, ActClient(srv.url) as client:
        for i in range(3):
            np.testing.assert_array_equal(client.act(_image(i), "go"), EchoPredictor.expected(_image(i), "go"))
    assert predictor.batch_sizes == [1, 1, 1]


def test_ensemble_answers_the_exponentially_weighted_average_of_every_prediction_for_the_step():
    from openvla.policy.chunking import ensemble_weights

    k, n, decay = 3, 6, 0.5
    predictor = ChunkPredictor(chunk=k)
    imgs = [_image(40 + i) for i in range(n)]
    config = ServeConfig(execution="ensemble", ensemble_decay=decay)
    with BackgroundServer(predictor, config) as srv, ActClient(srv.url) as client:
        actions = [client.act(im, "wipe the table") for im in imgs]
    assert len(predictor.calls) == n  # ensembling queries every step
    chunks = [ChunkPredictor.chunk(im, "wipe the table", k).astype(np.float64) for im in imgs]
    for t, action in enumerate(actions):
        preds = [chunks[s][t - s] for s in range(max(0, t - k + 1), t + 1)]  # oldest first
        expected = ensemble_weights(len(preds), decay) @ np.stack(preds)
        np.testing.assert_allclose(action, expected.astype(np.float32), rtol=1e-6)
    assert not np.allclose(actions[2], chunks[2][0])  # really a blend of three predictions, not the newest one


def test_reset_and_sessions_are_independent():
    k = 3
    predictor = ChunkPredictor(chunk=k)
    a, b = [_image(60 + i) for i in range(4)], [_image(70 + i) for i in range(3)]

    def row(image, step, instruction="go"):
        return ChunkPredictor.chunk(image, instruction, k)[step]

    with BackgroundServer(predictor, ServeConfig(execution="open_loop")) as srv, ActClient(srv.url) as client:
        np.testing.assert_array_equal(client.act(a[0], "go", session="a"), row(a[0], 0))
        np.testing.assert_array_equal(client.act(b[0], "go", session="b"), row(b[0], 0))
        np.testing.assert_array_equal(client.act(a[1], "go", session="a"), row(a[0], 1))  # a's chunk, not b's
        np.testing.assert_array_equal(client.act(a[2], "go", session="a", reset=True), row(a[2], 0))  # new episode
        np.testing.assert_array_equal(client.act(b[1], "go", session="b"), row(b[0], 1))  # b untouched by a's reset
        np.testing.assert_array_equal(client.act(b[2], "go", session="b"), row(b[0], 2))
        # a new instruction starts a new episode too: a's queued actions belonged to the old task
        np.testing.assert_array_equal(client.act(a[3], "open it", session="a"), row(a[3], 0, "open it"))
        health = client.health()
    assert len(predictor.calls) == 4 and (health["sessions"], health["resets"]) == (2, 2)


def test_sessions_beyond_max_sessions_drop_the_least_recently_used():
    k = 3
    predictor = ChunkPredictor(chunk=k)
    imgs = [_image(80 + i) for i in range(6)]
    config = ServeConfig(execution="open_loop", max_sessions=2)
    with BackgroundServer(predictor, config) as srv, ActClient(srv.url) as client:
        client.act(imgs[0], "go", session="a")  # query
        client.act(imgs[1], "go", session="b")  # query
        client.act(imgs[2], "go", session="b")  # b's row 1: b is now the most recently used
        client.act(imgs[3], "go", session="c")  # query; a (least recently used) is dropped
        assert set(srv.app.state.sessions) == {"b", "c"}
        np.testing.assert_array_equal(client.act(imgs[4], "go", session="b"), ChunkPredictor.chunk(imgs[1], "go", k)[2])
        assert len(predictor.calls) == 3  # b kept its chunk
        # a starts afresh (as after a reset): a query, row 0 of the new chunk; c is dropped in turn
        np.testing.assert_array_equal(client.act(imgs[5], "go", session="a"), ChunkPredictor.chunk(imgs[5], "go", k)[0])
        assert len(predictor.calls) == 4 and set(srv.app.state.sessions) == {"b", "a"}
        assert client.health()["evicted"] == 2


def test_concurrent_sessions_each_get_their_own_chunks_in_order():
    k, n_clients, n_requests = 4, 6, 10
    predictor = ChunkPredictor(chunk=k, proprio_dim=2)
    errors: list[str] = []

    def client_loop(cid: int) -> None:
        imgs = [_image(1000 * cid + i, size=8) for i in range(n_requests)]
        with ActClient(srv.url) as client:
            for i, image in enumerate(imgs):
                state = [cid, i]
                try:
                    action = client.act(image, f"task {cid}", proprio=state, session=f"robot-{cid}", reset=(i == 0))
                    q = i - i % k
                    expected = ChunkPredictor.chunk(imgs[q], f"task {cid}", k, proprio=[cid, q])[i % k]
                    if not np.array_equal(action, expected):
                        errors.append(f"client {cid} step {i}: {action} != {expected}")
                except Exception as err:  # reported by the assertion below
                    errors.append(f"client {cid} step {i}: {err!r}")

    config = ServeConfig(execution="open_loop", max_batch=8, batch_wait_ms=5.0)
    with BackgroundServer(predictor, config) as srv:
        threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(predictor.calls) == n_clients * 3  # steps 0, 4, 8 of each session ran the model


def test_unknown_execution_or_no_sessions_is_refused_at_startup():
    from openvla.serve.app import create_app
    from openvla.serve.sessions import SessionExecutors

    with pytest.raises(ValueError, match="must be one of chunk, open_loop, ensemble"):
        create_app(EchoPredictor(), ServeConfig(execution="closed_loop"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sessions must be at least 1"):
        SessionExecutors("open_loop", max_sessions=0)
    with pytest.raises(ValueError, match="open_loop_steps must be ≥ 0"):
        create_app(EchoPredictor(), ServeConfig(execution="open_loop", open_loop_steps=-1))


def test_act_refuses_unknown_keys_and_lists_the_accepted_ones():
    """A typo such as 'unorm_key' must not be dropped silently (the action would use the default statistics)."""
    from openvla.serve.payload import ACCEPTED_KEYS

    with BackgroundServer(EchoPredictor(["a", "b"])) as srv:
        body = json_numpy.dumps({"image": _image(), "instruction": "go", "unorm_key": "a"})
        response = httpx.post(f"{srv.url}/act", content=body)
    assert response.status_code == 422
    message = response.json()["error"]
    assert "'unorm_key'" in message and all(key in message for key in ACCEPTED_KEYS)


def test_eval_against_a_server_warns_when_its_open_loop_horizon_differs(caplog):
    """``eval-libero --server`` reads the server's ``open_loop_steps`` from ``/health``: a server that runs 2 actions
    per chunk does not execute what an in-process ``open_loop_steps: 0`` evaluation would, and the run says so."""
    import logging

    from openvla.config import EvalLiberoConfig
    from openvla.eval.libero import _check_server
    from openvla.eval.policy import PolicySpec

    config = ServeConfig(execution="open_loop", open_loop_steps=2)
    with BackgroundServer(ChunkPredictor(chunk=3), config) as srv, caplog.at_level(logging.WARNING):
        spec = PolicySpec(kind="server", server_url=srv.url)
        _check_server(spec, EvalLiberoConfig(execution="open_loop", open_loop_steps=0))
        assert "serve.open_loop_steps = 2" in caplog.text
        caplog.clear()
        _check_server(spec, EvalLiberoConfig(execution="open_loop", open_loop_steps=2))
        assert "open_loop_steps" not in caplog.text
