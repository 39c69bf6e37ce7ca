"""Chunk executors per client session: which episode a query belongs to, and when that episode starts afresh.

A ``SessionStore`` keeps one executor (``openvla.policy.chunking``) per session name, least recently used dropped
beyond ``max_sessions``. ``begin(session, context)`` returns the session's executor, reset first when the episode's
context (instruction, unnorm_key) changed — queued actions belong to the old task or another dataset's units — or
when ``reset(session)`` was called. ``Policy.act`` uses it directly; the ``/act`` server wraps it with one asyncio
lock per session (``openvla.serve.sessions``), so both execute chunks with the same code.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from openvla.policy.chunking import OpenLoopExecutor, TemporalEnsembleExecutor, make_executor

DEFAULT_SESSION = "default"
Executor = OpenLoopExecutor | TemporalEnsembleExecutor


@dataclass
class SessionStats:
    """Counters exposed on ``/health``."""

    queries: int = 0  # requests that ran the model
    from_chunk: int = 0  # requests answered from a queued chunk, without the model
    resets: int = 0  # episodes restarted (a reset or a new instruction / unnorm_key)
    evicted: int = 0  # sessions dropped beyond max_sessions

    def as_dict(self) -> dict:
        return {"queries": self.queries, "from_chunk": self.from_chunk, "resets": self.resets, "evicted": self.evicted}


@dataclass
class _Session:
    executor: Executor
    context: Hashable | None = None  # what the current episode was asked (instruction, unnorm_key)
    pending_reset: bool = False


class SessionStore:
    """One executor of kind ``kind`` ("open_loop" | "ensemble") per session name."""

    def __init__(self, kind: str, decay: float = 0.01, max_sessions: int = 64, open_loop_steps: int = 0) -> None:
        if kind not in ("open_loop", "ensemble"):
            raise ValueError(f"serve.execution {kind!r} keeps no sessions; expected 'open_loop' or 'ensemble'")
        if max_sessions < 1:
            raise ValueError(f"serve.max_sessions must be at least 1, got {max_sessions}")
        make_executor(kind, decay, open_loop_steps)  # fail now, not on the first request
        self.kind = kind
        self.decay = decay
        self.open_loop_steps = open_loop_steps  # open_loop: actions executed per chunk (0 = all)
        self.max_sessions = max_sessions
        self.stats = SessionStats()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, name: object) -> bool:
        return name in self._sessions

    def __iter__(self):  # session names, least recently used first
        return iter(list(self._sessions))

    def reset(self, name: str) -> None:
        """The next ``begin`` of ``name`` starts a new episode."""
        session = self._sessions.get(name)
        if session is not None:
            session.pending_reset = True

    def begin(
        self,
        name: str,
        context: Hashable,
        reset: bool = False,
        busy: Callable[[str], bool] = lambda _: False,
    ) -> Executor:
        """The executor for this request of ``name``; a new episode when ``reset`` or the context changed.

        ``busy(other)`` tells whether another session is serving a request right now: such a session is kept even
        beyond ``max_sessions``, so a session never has two executors at once.
        """
        session = self._get(name, busy)
        if reset or session.pending_reset or (session.context is not None and session.context != context):
            session.executor.reset()
            self.stats.resets += 1
        session.pending_reset = False
        session.context = context
        if session.executor.wants_query():
            self.stats.queries += 1
        else:
            self.stats.from_chunk += 1
        return session.executor

    def will_query(self, name: str) -> bool:
        """Whether the next request of ``name`` in the same episode will run the model (no side effects): the
        caller can then skip producing an observation nobody reads (an open-loop chunk's middle steps)."""
        session = self._sessions.get(name)
        return session is None or session.pending_reset or session.executor.wants_query()

    def _get(self, name: str, busy: Callable[[str], bool]) -> _Session:
        session = self._sessions.get(name)
        if session is not None:
            self._sessions.move_to_end(name)
            return session
        session = _Session(make_executor(self.kind, self.decay, self.open_loop_steps))
        self._sessions[name] = session
        for old in list(self._sessions):
            if len(self._sessions) <= self.max_sessions:
                break
            if old != name and not busy(old):
                del self._sessions[old]
                self.stats.evicted += 1
        return session
