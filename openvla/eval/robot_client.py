"""The robot a live Bridge evaluation drives: a small ``RobotClient`` protocol, the WidowX adapter, a fake robot.

DESIGN §11: the WidowX is reached through a ``widowx_envs``-style client at host:port (the ``bridge_data_robot``
action server). Our control loop only needs three calls, so it codes against ``RobotClient``:

* ``reset()`` — back to the start pose, gripper open;
* ``get_observation() -> {"image": uint8 H×W×3, "state": float array}`` — the current camera frame and proprio
  (plus ``wrist_image`` for a robot with a wrist camera, which a two-camera model needs);
* ``step(action)`` — send one 7-D action (xyz + rpy deltas, gripper 1 = open) without waiting for the motion.

``WidowXRobot`` wraps ``widowx_envs.widowx_env_service.WidowXClient`` (not on PyPI: install ``bridge_data_robot``'s
``widowx_envs`` and its ``edgeml`` dependency on the robot-side machine); it is imported only when a live run starts.
``FakeRobot`` records the actions it receives and returns synthetic images — what the tests use. Clocks are
injectable (``SystemClock`` / ``ManualClock``) so rate control is tested without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

WIDOWX_SUCCESS = 1  # WidowXStatus.SUCCESS of the bridge_data_robot action server (0 = no connection)

# Environment parameters the WidowX action server's ``init`` expects (its documented defaults for evaluation:
# 0.2 s moves = 5 Hz, the blue third-person camera as the primary image, xyz clipping to the workspace).
DEFAULT_WIDOWX_ENV_PARAMS: dict[str, Any] = {
    "fix_zangle": 0.1,
    "move_duration": 0.2,
    "adaptive_wait": True,
    "move_to_rand_start_freq": 1,
    "override_workspace_boundaries": [[0.1, -0.15, -0.1, -1.57, 0], [0.45, 0.25, 0.18, 1.57, 0]],
    "action_clipping": "xyz",
    "catch_environment_except": False,
    "start_state": [0.3, 0.0, 0.15, 0, 0, 0, 1],
    "skip_move_to_neutral": False,
    "return_full_image": False,
    "camera_topics": [{"name": "/blue/image_raw"}],
}


class RobotError(RuntimeError):
    """The robot (or its client) failed: no connection, a refused command, a malformed observation."""


@runtime_checkable
class RobotClient(Protocol):
    """What the live control loop needs from a robot."""

    def reset(self) -> None: ...

    def get_observation(self) -> dict[str, np.ndarray]: ...

    def step(self, action: np.ndarray) -> None: ...


class Clock(Protocol):
    """Monotonic time and sleep; injected so tests control time."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that only moves when told: ``sleep`` advances it (and is recorded), ``advance`` simulates work."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.now += max(0.0, float(seconds))

    def advance(self, seconds: float) -> None:
        self.now += float(seconds)


def check_observation(obs: Any) -> dict[str, np.ndarray]:
    """Validate a ``get_observation`` result: a uint8 H×W×3 ``image`` (and ``wrist_image``, when the robot has a
    wrist camera) and a float ``state``."""
    if not isinstance(obs, Mapping) or "image" not in obs:
        raise RobotError(f"robot observation must be a dict with an 'image' key, got {type(obs).__name__}")
    out = {}
    for key in ("image", "wrist_image"):
        if key not in obs:
            continue
        image = np.asarray(obs[key])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise RobotError(f"robot observation {key!r} must be uint8 H×W×3, got {image.dtype} {image.shape}")
        out[key] = image
    out["state"] = np.asarray(obs.get("state", np.zeros(0)), dtype=np.float32).reshape(-1)
    return out


class FakeRobot:
    """A robot for tests and dry runs: synthetic images, a state that integrates the received actions.

    ``actions`` holds every action exactly as ``step`` received it; ``clock`` (optional) gets ``step_latency``
    seconds added per ``step`` and ``observation_latency`` per ``get_observation`` to mimic a real link.
    """

    def __init__(
        self,
        image_size: int = 256,
        seed: int = 0,
        clock: ManualClock | None = None,
        step_latency: float = 0.0,
        observation_latency: float = 0.0,
    ) -> None:
        self.image_size = image_size
        self.rng = np.random.default_rng(seed)
        self.clock = clock
        self.step_latency = step_latency
        self.observation_latency = observation_latency
        self.actions: list[np.ndarray] = []
        self.images: list[np.ndarray] = []
        self.resets = 0
        self.state = np.zeros(7, dtype=np.float32)

    def reset(self) -> None:
        self.resets += 1
        self.state = np.zeros(7, dtype=np.float32)
        self.state[-1] = 1.0  # gripper open

    def get_observation(self) -> dict[str, np.ndarray]:
        if self.clock is not None:
            self.clock.advance(self.observation_latency)
        image = self.rng.integers(0, 256, (self.image_size, self.image_size, 3), dtype=np.uint8)
        self.images.append(image)
        return {"image": image, "state": self.state.copy()}

    def step(self, action: np.ndarray) -> None:
        if self.clock is not None:
            self.clock.advance(self.step_latency)
        self.actions.append(action)  # kept as received: tests check the loop passes actions unchanged
        action = np.asarray(action, dtype=np.float32)
        self.state[:6] += action[:6]
        self.state[-1] = action[-1]


class WidowXRobot:
    """``RobotClient`` over ``bridge_data_robot``'s ``WidowXClient`` (``widowx_envs`` package), imported lazily.

    ``get_observation`` returns the server's ``image`` (channels-first floats in [0, 1], flattened) as uint8
    H×W×3, the 256 px view the Bridge datasets store as ``image_0``; ``step`` calls ``step_action(action,
    blocking=False)`` (non-blocking control: the loop keeps the period).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5556,
        image_size: int = 256,
        env_params: Mapping[str, Any] | None = None,
        client: Any = None,
        observation_timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self.image_size = image_size
        self.observation_timeout = observation_timeout
        self.clock = clock or SystemClock()
        if client is None:
            client = self._connect(host, port)
        self.client = client
        status = self.client.init(dict(env_params or DEFAULT_WIDOWX_ENV_PARAMS), image_size=image_size)
        if status != WIDOWX_SUCCESS:
            raise RobotError(f"WidowX at {host}:{port}: init returned status {status} (expected {WIDOWX_SUCCESS})")

    @staticmethod
    def _connect(host: str, port: int) -> Any:
        try:
            from widowx_envs.widowx_env_service import WidowXClient
        except ImportError as err:
            raise RobotError(
                "eval_bridge.mode=live needs the WidowX client package `widowx_envs` (from the bridge_data_robot "
                f"repository, with its `edgeml` dependency), which is not importable here ({err}). Install it on "
                "this machine, or run eval_bridge.mode=offline."
            ) from err
        log.info("connecting to the WidowX action server at %s:%d", host, port)
        return WidowXClient(host=host, port=port)

    def reset(self) -> None:
        status = self.client.reset()
        if status != WIDOWX_SUCCESS:
            raise RobotError(f"WidowX reset returned status {status}")

    def get_observation(self) -> dict[str, np.ndarray]:
        deadline = self.clock.monotonic() + self.observation_timeout
        obs = self.client.get_observation()
        while obs is None:  # the server answers None until the cameras publish
            if self.clock.monotonic() > deadline:
                raise RobotError(f"WidowX: no observation within {self.observation_timeout} s")
            self.clock.sleep(0.1)
            obs = self.client.get_observation()
        image = np.asarray(obs["image"], dtype=np.float32)
        size = self.image_size
        if image.ndim == 1 or image.shape[0] == 3:  # channels-first floats in [0, 1]
            image = image.reshape(3, size, size).transpose(1, 2, 0)
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
        return check_observation({"image": image, "state": obs.get("state", np.zeros(0))})

    def step(self, action: np.ndarray) -> None:
        status = self.client.step_action(action, blocking=False)
        if status != WIDOWX_SUCCESS:
            raise RobotError(f"WidowX step_action returned status {status}")

    def close(self) -> None:
        stop = getattr(self.client, "stop", None)
        if callable(stop):
            stop()
