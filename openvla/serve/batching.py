"""Micro-batching of concurrent `/act` requests: one model call for requests that arrive together.

Requests go into an asyncio queue; one worker task takes the first, then keeps collecting for up to
``batch_wait_ms`` (or until ``max_batch`` are waiting), splits the batch by ``unnorm_key`` and runs the predictor
on a single dedicated thread, so the event loop keeps accepting requests (and answering ``/health``) while the
model computes. Whatever queues up during one model call forms the next batch, so batches grow with load and
a lone client pays at most ``batch_wait_ms`` extra latency.

Requests with a ``proprio`` state (models with ``use_proprio``) are batched apart from those without and reach the
predictor as ``proprios`` (one (P,) array per request, stacked to (B, P) by ``Policy.predict``). Only requests that
need the model come here: in the open_loop execution mode a request answered from its session's queued chunk
(``sessions.py``) never enters the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class BatchPredictor(Protocol):
    """What the server needs from a policy: batched prediction plus the datasets it can unnormalize for.

    Optional attributes, read with ``getattr``: ``proprio_dim`` (int when the model needs the robot state, else
    None/absent) and ``action_chunk`` (K, 1 when absent). ``predict_batch`` gets ``proprios=`` only when the
    requests carry a state, so a predictor without proprioception may omit that parameter.
    """

    unnorm_keys: list[str]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        instructions: Sequence[str],
        unnorm_key: str | None,
        proprios: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Images (H, W, 3) uint8 (a tuple of them, one per camera, for several-camera predictors) and instructions →
        one unnormalized action array per request: (D,) or (K, D)."""
        ...


class ServerBusy(RuntimeError):
    """Too many requests are already waiting for the model (answered 503)."""


@dataclass
class BatchStats:
    """Counters exposed on ``/health`` (and read by the benchmark to show batching happened)."""

    requests: int = 0
    batches: int = 0
    max_batch_seen: int = 0
    errors: int = 0
    rejected: int = 0  # refused with 503 because the queue was full
    sizes: dict[int, int] = field(default_factory=dict)  # batch size → count

    def as_dict(self) -> dict:
        mean = self.requests / self.batches if self.batches else 0.0
        return {
            "requests": self.requests,
            "batches": self.batches,
            "mean_batch": round(mean, 3),
            "max_batch_seen": self.max_batch_seen,
            "errors": self.errors,
            "rejected": self.rejected,
        }


@dataclass
class _Item:
    image: np.ndarray
    instruction: str
    unnorm_key: str | None
    future: asyncio.Future
    proprio: np.ndarray | None = None


class MicroBatcher:
    """Collect requests into batches and run ``predictor.predict_batch`` on one worker thread."""

    def __init__(
        self, predictor: BatchPredictor, max_batch: int = 8, batch_wait_ms: float = 2.0, max_queue: int = 256
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"serve.max_batch must be at least 1, got {max_batch}")
        if batch_wait_ms < 0:
            raise ValueError(f"serve.batch_wait_ms must be >= 0, got {batch_wait_ms}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.wait_s = batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        # One thread: the model is not re-entrant and torch already uses every core inside one call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openvla-predict")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="openvla-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(
        self, image: np.ndarray, instruction: str, unnorm_key: str | None, proprio: np.ndarray | None = None
    ) -> np.ndarray:
        """Queue one request and wait for its action (or chunk)."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running (server starting up or shutting down)")
        if self._queue.qsize() >= self.max_queue:
            self.stats.rejected += 1
            raise ServerBusy(f"{self._queue.qsize()} requests are already waiting (serve.max_queue); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(image, instruction, unnorm_key, future, proprio))
        return await future

    async def _collect(self) -> list[_Item]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())  # take what is already waiting, never wait longer
                else:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, TimeoutError):
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            groups: dict[tuple[str | None, bool], list[_Item]] = {}
            for item in batch:
                groups.setdefault((item.unnorm_key, item.proprio is not None), []).append(item)
            for (key, with_proprio), items in groups.items():
                items = [it for it in items if not it.future.done()]  # a client that went away was cancelled
                if not items:
                    continue
                self.stats.requests += len(items)
                self.stats.batches += 1
                self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(items))
                self.stats.sizes[len(items)] = self.stats.sizes.get(len(items), 0) + 1
                args = ([it.image for it in items], [it.instruction for it in items], key)
                kwargs = {"proprios": [it.proprio for it in items]} if with_proprio else {}
                try:
                    actions = await loop.run_in_executor(
                        self._executor, functools.partial(self.predictor.predict_batch, *args, **kwargs)
                    )
                    if len(actions) != len(items):
                        raise RuntimeError(f"predictor returned {len(actions)} actions for {len(items)} requests")
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # a model failure fails these requests, never the server
                    log.exception("prediction failed for a batch of %d", len(items))
                    self.stats.errors += len(items)
                    for it in items:
                        if not it.future.done():
                            it.future.set_exception(err)
                    continue
                for it, action in zip(items, actions, strict=True):
                    if not it.future.done():
                        it.future.set_result(action)
