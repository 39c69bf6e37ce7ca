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
executing chunks here gives them OFT's chunking without changing a line of the client. The executors are the ones
of ``openvla.eval.chunking``, so the server executes chunks exactly as the LIBERO evaluation does. A model that
answers (D,) (K = 1) is treated as predicting chunks of one action: every request calls the model.

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
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from openvla.eval.chunking import OpenLoopExecutor, TemporalEnsembleExecutor, make_executor
from openvla.serve.payload import ActRequest

EXECUTIONS = ("chunk", "open_loop", "ensemble")


@dataclass
class SessionStats:
    """Counters exposed on ``/health``."""

    queries: int = 0  # requests that ran the model
    from_chunk: int = 0  # requests answered from a queued chunk, without the model
    resets: int = 0  # episodes restarted (``reset: true`` or a new instruction / unnorm_key)
    evicted: int = 0  # sessions dropped beyond serve.max_sessions

    def as_dict(self) -> dict:
        return {"queries": self.queries, "from_chunk": self.from_chunk, "resets": self.resets, "evicted": self.evicted}


@dataclass
class _Session:
    executor: OpenLoopExecutor | TemporalEnsembleExecutor
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    context: tuple[str, str | None] | None = None  # (instruction, unnorm_key) of the current episode


class SessionExecutors:
    """One chunk executor per client session, least recently used dropped beyond ``max_sessions``."""

    def __init__(self, kind: str, decay: float = 0.01, max_sessions: int = 64) -> None:
        if kind not in ("open_loop", "ensemble"):
            raise ValueError(f"serve.execution {kind!r} keeps no sessions; expected 'open_loop' or 'ensemble'")
        if max_sessions < 1:
            raise ValueError(f"serve.max_sessions must be at least 1, got {max_sessions}")
        make_executor(kind, decay)  # fail now, not on the first request
        self.kind = kind
        self.decay = decay
        self.max_sessions = max_sessions
        self.stats = SessionStats()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, name: object) -> bool:
        return name in self._sessions

    def _get(self, name: str) -> _Session:
        session = self._sessions.get(name)
        if session is not None:
            self._sessions.move_to_end(name)
            return session
        session = _Session(make_executor(self.kind, self.decay))
        self._sessions[name] = session
        # Drop the least recently used sessions that are not serving a request right now (a busy one is kept even
        # beyond the bound, so one session never has two executors at once).
        for old in list(self._sessions):
            if len(self._sessions) <= self.max_sessions:
                break
            if old != name and not self._sessions[old].lock.locked():
                del self._sessions[old]
                self.stats.evicted += 1
        return session

    async def act(self, request: ActRequest, query: Callable[[], Awaitable[np.ndarray]]) -> np.ndarray:
        """The (D,) float32 action for ``request``; ``query()`` runs the model for it (a (D,) or (K, D) array)."""
        session = self._get(request.session)
        async with session.lock:
            context = (request.instruction, request.unnorm_key)
            if request.reset or (session.context is not None and session.context != context):
                session.executor.reset()
                self.stats.resets += 1
            session.context = context
            if session.executor.wants_query():
                chunk = np.asarray(await query())
                session.executor.push(chunk if chunk.ndim == 2 else chunk.reshape(1, -1))
                self.stats.queries += 1
            else:
                self.stats.from_chunk += 1
            return np.asarray(session.executor.pop(), dtype=np.float32)
