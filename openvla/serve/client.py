"""A small client for the `/act` server (httpx, json-numpy), e.g. for a robot loop or the benchmark.

with ActClient("http://127.0.0.1:8000") as client:
    action = client.act(image, "pick up the black bowl")  # (7,) float array

An OFT model may need the robot state and answers a (K, D) chunk unless the server executes chunks
(``serve.execution`` open_loop / ensemble), where each robot sends its own ``session`` and ``reset=True`` at the
start of an episode:

    action = client.act(image, "pick up the black bowl", proprio=state, session="robot-1", reset=(t == 0))

A two-camera model (``camera_roles`` primary + wrist) also takes the wrist frame:

    chunk = client.act(image, "pick up the black bowl", wrist_image=wrist, proprio=state)  # (K, D)
"""

from __future__ import annotations

import json

import httpx
import json_numpy
import numpy as np


class ActError(RuntimeError):
    """The server refused or failed a request; ``status`` is the HTTP status, ``message`` its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ActClient:
    """Synchronous client; one instance keeps one HTTP connection alive (not thread-safe: one per thread)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def act(
        self,
        image: np.ndarray,
        instruction: str,
        unnorm_key: str | None = None,
        *,
        proprio: np.ndarray | list[float] | None = None,
        session: str | None = None,
        reset: bool = False,
        wrist_image: np.ndarray | None = None,
        images: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Send one uint8 (H, W, 3) image and an instruction; return the unnormalized action (D,) or chunk (K, D).

        ``proprio``: the raw robot state (P,), for a model with ``use_proprio``. ``session`` / ``reset``: this
        client's episode id and "a new episode starts here", used when the server executes chunks.
        ``wrist_image`` / ``images`` ({camera role: frame}): the other cameras of a several-camera model.
        """
        payload: dict = {"image": np.ascontiguousarray(image), "instruction": instruction}
        if wrist_image is not None:
            payload["wrist_image"] = np.ascontiguousarray(wrist_image)
        if images:
            payload["images"] = {role: np.ascontiguousarray(frame) for role, frame in images.items()}
        if unnorm_key is not None:
            payload["unnorm_key"] = unnorm_key
        if proprio is not None:
            payload["proprio"] = np.ascontiguousarray(proprio, dtype=np.float64)
        if session is not None:
            payload["session"] = session
        if reset:
            payload["reset"] = True
        response = self._http.post(
            "/act", content=json_numpy.dumps(payload), headers={"content-type": "application/json"}
        )
        return np.asarray(self._decode(response))

    def health(self) -> dict:
        return self._decode(self._http.get("/health"))

    @staticmethod
    def _decode(response: httpx.Response):
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except (json.JSONDecodeError, AttributeError):
                message = response.text
            raise ActError(response.status_code, message)
        return json_numpy.loads(response.text)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ActClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemotePolicy:
    """A ``Policy`` on another machine: ``act(observation, session=…)`` / ``reset(session)`` over ``/act``.

    The observation goes as the raw camera frame (plus instruction, proprio, unnorm_key); the server applies the model's
    transform. When the server answers chunks (``serve.execution: chunk``), they are executed here with ``execution``
    exactly as ``Policy.act`` would; when the server executes them itself it answers (D,) actions, which pass through
    unchanged (a chunk of one). So ``eval-libero --server URL`` gets the in-process actions either way.
    """

    def __init__(
        self,
        url: str,
        *,
        unnorm_key: str | None = None,
        execution: str = "ensemble",
        ensemble_decay: float = 0.01,
        timeout: float = 60.0,
        open_loop_steps: int = 0,
    ) -> None:
        from openvla.policy.chunking import EXECUTIONS
        from openvla.policy.sessions import SessionStore

        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}")
        self.client = ActClient(url, timeout=timeout)
        self.unnorm_key = unnorm_key or None
        self.execution = execution
        self.sessions = (
            SessionStore(execution, ensemble_decay, open_loop_steps=open_loop_steps) if execution != "chunk" else None
        )
        self._new_episode: set[str] = set()
        self.queries = 0  # HTTP requests sent
        self._cameras: list[str] | None = None

    def describe(self) -> dict:
        """The server's ``/health``: its model's transform, K, proprio size, datasets and execution mode."""
        return self.client.health()

    @property
    def cameras(self) -> list[str]:
        """The camera roles the server's model reads (from ``/health``, asked once)."""
        if self._cameras is None:
            self._cameras = list(self.describe().get("cameras") or ["primary"])
        return self._cameras

    def will_query(self, session: str = "default") -> bool:
        """Whether the next ``act`` of ``session`` (same instruction) sends a request, i.e. reads its observation."""
        return self.sessions is None or self.sessions.will_query(session)

    def reset(self, session: str = "default") -> None:
        self._new_episode.add(session)
        if self.sessions is not None:
            self.sessions.reset(session)

    def act(self, observation: dict, *, session: str = "default") -> np.ndarray:
        instruction = str(observation["instruction"])
        unnorm_key = observation.get("unnorm_key") or self.unnorm_key

        images = dict(observation.get("images") or {})
        image = observation.get("image")
        if image is None:  # the model's first camera travels as 'image', the others under 'images'
            image = images.pop(self.cameras[0], None)
            if image is None:
                raise ValueError(f"observation has no 'image' and no images[{self.cameras[0]!r}]")

        def query() -> np.ndarray:
            out = self.client.act(
                image,
                instruction,
                unnorm_key,
                proprio=observation.get("proprio"),
                session=session,
                reset=session in self._new_episode,
                wrist_image=observation.get("wrist_image"),
                images=images or None,
            )
            self._new_episode.discard(session)
            self.queries += 1
            return np.asarray(out, dtype=np.float32)

        if self.sessions is None:
            return query()
        executor = self.sessions.begin(session, (instruction, unnorm_key))
        if executor.wants_query():
            # A (D,) answer (K = 1, or a server that executes chunks itself) is a chunk of one: passed through as is.
            executor.push(np.atleast_2d(query()))
        return np.asarray(executor.pop(), dtype=np.float32)

    def close(self) -> None:
        self.client.close()
