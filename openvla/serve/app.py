"""The FastAPI application: ``POST /act`` (image + instruction → action) and ``GET /health``.

``create_app(predictor, config)`` wraps an already-loaded predictor (the model is loaded once, by the caller): in
``openvla serve`` an ``openvla.policy.Policy``, which applies the model's observation transform to the raw frames
clients send, so ``/act`` answers what the in-process policy answers for the same observation.
With ``serve.execution`` = chunk the answer is what the model predicts ((D,), or (K, D) for a chunking model);
with open_loop / ensemble the server executes chunks per client session and answers one (D,) action
(``sessions.py`` says how and why).
Client mistakes get 4xx with a message (see ``payload.py``); an oversized body is refused with 413 after being
drained (so the client reads the answer instead of a reset connection); anything unexpected is logged and answered
500 without taking the server down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import json_numpy
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from openvla.config import ServeConfig
from openvla.serve.batching import BatchPredictor, MicroBatcher, ServerBusy
from openvla.serve.payload import ActRequest, PayloadError, max_body_bytes, parse_body, validate_request
from openvla.serve.sessions import EXECUTIONS, SessionExecutors

log = logging.getLogger(__name__)

# Past this many bytes an oversized body is no longer drained: the connection is simply closed after the 413.
_DRAIN_FACTOR = 8
# Bodies smaller than this are parsed on the event loop (a 224 px image is ~200 kB; a thread hop costs more).
_INLINE_DECODE_BYTES = 1 << 20


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "status": status})


def _action_response(action: np.ndarray) -> Response:
    """json-numpy body, exactly what OpenVLA's deploy server returns (``json_numpy.loads`` gives the array)."""
    return Response(content=json_numpy.dumps(np.asarray(action)), media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 ``PayloadError`` once it exceeds ``limit`` bytes (the rest is drained)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit * _DRAIN_FACTOR:
        raise PayloadError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit * _DRAIN_FACTOR:
            break
    if size > limit:
        raise PayloadError(
            413, f"request body of {size}+ bytes exceeds the limit of {limit} bytes (serve.max_image_bytes)"
        )
    return b"".join(chunks)


def create_app(predictor: BatchPredictor, config: ServeConfig | None = None, model_name: str = "openvla") -> FastAPI:
    """An ASGI app serving ``predictor``; start it with uvicorn (``openvla.serve.server.run_server``)."""
    config = config or ServeConfig()
    if config.execution not in EXECUTIONS:
        raise ValueError(f"serve.execution must be one of {', '.join(EXECUTIONS)}, got {config.execution!r}")
    batcher = MicroBatcher(
        predictor, max_batch=config.max_batch, batch_wait_ms=config.batch_wait_ms, max_queue=config.max_queue
    )
    sessions = (
        None
        if config.execution == "chunk"
        else SessionExecutors(
            config.execution,
            decay=config.ensemble_decay,
            max_sessions=config.max_sessions,
            open_loop_steps=config.open_loop_steps,
        )
    )
    cameras = list(getattr(predictor, "cameras", None) or ["primary"])
    body_limit = max_body_bytes(config.max_image_bytes * len(cameras))  # one image per camera
    proprio_dim = getattr(predictor, "proprio_dim", None)
    action_chunk = getattr(predictor, "action_chunk", 1)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        log.info(
            "serving %s (unnorm keys: %s), max_batch=%d, action_chunk=%d, execution=%s, proprio_dim=%s",
            model_name, predictor.unnorm_keys, config.max_batch, action_chunk, config.execution, proprio_dim,
        )  # fmt: skip
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="OpenVLA policy server", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.sessions = sessions

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": model_name,
            "unnorm_keys": list(predictor.unnorm_keys),
            "action_chunk": action_chunk,
            "proprio_dim": proprio_dim,
            "cameras": cameras,
            "execution": config.execution,
            "open_loop_steps": config.open_loop_steps,  # open_loop: actions run per chunk before the next query
            **({"transform": predictor.transform.as_dict()} if hasattr(predictor, "transform") else {}),
            **batcher.stats.as_dict(),
            **({"sessions": len(sessions), **sessions.stats.as_dict()} if sessions is not None else {}),
        }

    @app.post("/act")
    async def act(request: Request) -> Response:
        def decode(body: bytes) -> ActRequest:
            return validate_request(
                parse_body(body),
                unnorm_keys=list(predictor.unnorm_keys),
                max_image_bytes=config.max_image_bytes,
                max_instruction_chars=config.max_instruction_chars,
                proprio_dim=proprio_dim,
                cameras=cameras,
            )

        try:
            body = await _read_body(request, body_limit)
            # Large bodies are decoded off the event loop so other requests (and /health) keep flowing.
            req = decode(body) if len(body) < _INLINE_DECODE_BYTES else await run_in_threadpool(decode, body)
        except ClientDisconnect:
            return Response(status_code=499)  # the client went away; nobody reads this
        except PayloadError as err:
            log.info("rejected /act request: %d %s", err.status, err.message)
            return _error(err.status, err.message)

        async def query() -> np.ndarray:
            return await batcher.submit(req.model_images, req.instruction, req.unnorm_key, req.proprio)

        try:
            action = await (query() if sessions is None else sessions.act(req, query))
        except PayloadError as err:  # a predictor may still refuse an input it cannot handle
            return _error(err.status, err.message)
        except ServerBusy as err:
            return _error(503, str(err))
        except Exception as err:
            log.exception("/act failed")
            return _error(500, f"the model failed on this request: {type(err).__name__}: {err}")
        return _action_response(action)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:  # last resort: answer, never crash
        log.exception("unhandled error")
        return _error(500, f"internal error: {type(err).__name__}")

    return app
