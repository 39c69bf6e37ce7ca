"""Run the `/act` server: in the foreground (``openvla serve``) or in a background thread (tests, benchmarks).

The model is loaded once, before the server accepts connections. The server binds 127.0.0.1 unless told
otherwise: a policy server has no authentication, so exposing it is an explicit choice (``--host 0.0.0.0``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn

from openvla.config import ServeConfig
from openvla.serve.app import create_app
from openvla.serve.batching import BatchPredictor

log = logging.getLogger(__name__)


def run_server(
    model_dir: str | Path,
    config: ServeConfig | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
) -> None:
    """Load the HF model directory ``model_dir`` and serve it until interrupted (Ctrl-C)."""
    from openvla.policy import Policy

    config = config or ServeConfig()
    policy = Policy.from_pretrained(model_dir, device=device, dtype=dtype)  # the server executes chunks itself
    app = create_app(policy, config, model_name=Path(model_dir).name)
    if config.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning(
            "binding %s: the policy server has no authentication; anyone who can reach it can drive it", config.host
        )
    uvicorn.run(app, host=config.host, port=config.port, log_level="info", access_log=False)


class BackgroundServer:
    """A real uvicorn server on a free loopback port in a daemon thread; ``url`` once started, ``stop()`` to end.

    Used by the tests and ``bench/serve.py`` so they exercise the same HTTP stack as ``openvla serve``.
    """

    def __init__(self, predictor: BatchPredictor, config: ServeConfig | None = None, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))  # port 0: the OS picks a free port, no race with other tests
        port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{port}"
        app = create_app(predictor, config)
        self.app = app
        uv_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
