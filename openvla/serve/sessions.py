"""Executing action chunks on the server, one executor per client session (``serve.execution``).

An OpenVLA client sends one observation and expects one action back. An OpenVLA-OFT model predicts a chunk of K
actions per query. ``serve.execution`` decides who executes the chunk:

* ``chunk`` (default): the server answers exactly what the model predicts, (D,) for K = 1 and (K, D) for K > 1; the
  client executes the chunk. No state is kept on the server.
* ``open_loop``: the server executes the chunk for the client and answers one (D,) action per request. A request
  whose session still has queued actions is answered from them **without calling the model** (it never reaches the
  batcher): one model call per K requests, which is chunking's speed-up.
* ``ensemble``: every request calls the model; the answer is the exponentially weighted average of every
  prediction made so far for this step (ACT's temporal ensembling, weights ``ensemble_weights(n,
  serve.ensemble_decay)``, oldest first).

Why on the server: OpenVLA clients (the official deploy client, the LIBERO/WidowX loops) expect one action per call;
executing chunks here gives them OFT's chunking without changing a line of the client. The executors and their store are
``openvla.policy``'s, so the server executes chunks exactly as ``Policy.act`` (and the LIBERO evaluation) does. A model
that answers (D,) (K = 1) is treated as predicting chunks of one action: every request calls the model.

State lives per *session*: the request's ``session`` string (absent: ``"default"``, so clients that omit it share one
executor; concurrent robots must each send their own id). ``reset: true`` starts a new episode for that session
(drops its queued actions / past predictions); a change of ``instruction`` or ``unnorm_key`` within a session does
too, since queued actions belong to the old task (or to another dataset's units). Requests of one session are served
one at a time in arrival order; requests of different sessions are batched together as usual. At most
``serve.max_sessions`` executors are kept: beyond that the least recently used idle one is dropped, and its next
request starts afresh, as after a reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from openvla.policy.chunking import EXECUTIONS
from openvla.policy.sessions import SessionStats, SessionStore
from openvla.serve.payload import ActRequest

__all__ = ["EXECUTIONS", "SessionExecutors", "SessionStats"]


class SessionExecutors:
    """``openvla.policy.sessions.SessionStore`` with one asyncio lock per session: requests of one session are
    served one at a time, in arrival order."""

    def __init__(self, kind: str, decay: float = 0.01, max_sessions: int = 64, open_loop_steps: int = 0) -> None:
        # ValueError names serve.execution / max_sessions / open_loop_steps
        self._store = SessionStore(kind, decay, max_sessions, open_loop_steps)
        self._locks: dict[str, asyncio.Lock] = {}
        self.kind, self.decay, self.max_sessions = kind, decay, max_sessions

    @property
    def stats(self) -> SessionStats:
        return self._store.stats

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, name: object) -> bool:
        return name in self._store

    def __iter__(self):  # session names, least recently used first
        return iter(self._store)

    def _busy(self, name: str) -> bool:
        lock = self._locks.get(name)
        return lock is not None and lock.locked()

    async def act(self, request: ActRequest, query: Callable[[], Awaitable[np.ndarray]]) -> np.ndarray:
        """The (D,) float32 action for ``request``; ``query()`` runs the model for it (a (D,) or (K, D) array)."""
        lock = self._locks.setdefault(request.session, asyncio.Lock())
        async with lock:
            context = (request.instruction, request.unnorm_key)
            executor = self._store.begin(request.session, context, request.reset, busy=self._busy)
            for name in [n for n in self._locks if n not in self._store and not self._busy(n)]:
                del self._locks[name]  # evicted sessions
            if executor.wants_query():
                executor.push(np.atleast_2d(np.asarray(await query())))
            return np.asarray(executor.pop(), dtype=np.float32)
