"""How many calls each caller may have open at once, by kind of call.

gRPC's synchronous server runs every call on one thread of one fixed pool. A call that waits (a
long-poll, an upload waiting for its next chunk, a download waiting for the reader) holds its
thread the whole time, so one authenticated node that opens hundreds of them takes every thread,
and every other caller (the admins, the other hospitals) queues behind it. Two bounds prevent
that:

- per identity and kind: an honest node holds one long-poll, one upload and one download at a
  time (the agent runs one task at a time); a little slack covers a retry racing the call it
  replaces. Calls beyond the bound are refused at once, so they never hold a thread;
- all nodes together: the waiting kinds may hold at most ``node_threads`` of the pool, which is
  sized larger, so the rest stays free for short calls and for the admins.

Refusals say which bound was hit: :class:`Busy` carries the message the caller gets back with
``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class CallKind(StrEnum):
    """What a call does with its thread, which decides how many a caller may hold."""

    POLL = "long-poll"
    UPLOAD = "upload"
    DOWNLOAD = "download"
    SHORT = "short call"
    ADMIN = "admin call"


WAITING_KINDS = frozenset({CallKind.POLL, CallKind.UPLOAD, CallKind.DOWNLOAD})
"""Kinds that may hold a thread for long, and so count against ``node_threads``."""

_DEFAULT_PER_IDENTITY: Mapping[CallKind, int] = MappingProxyType(
    {CallKind.POLL: 2, CallKind.UPLOAD: 2, CallKind.DOWNLOAD: 2, CallKind.SHORT: 4}
)


class Busy(Exception):
    """A call refused because its caller, or all nodes together, hold their share already."""


@dataclass(frozen=True)
class CallLimits:
    """``per_identity``: the most open calls of each kind one identity may hold (a kind absent
    is unbounded); ``node_threads``: the most threads waiting kinds may hold, all callers
    together; ``admin_threads``: the rest of the pool, kept for short calls and admins."""

    per_identity: Mapping[CallKind, int] = field(default_factory=lambda: _DEFAULT_PER_IDENTITY)
    node_threads: int = 96
    admin_threads: int = 32

    @property
    def pool_size(self) -> int:
        return self.node_threads + self.admin_threads


class CallLimiter:
    """Counts open calls per (identity, kind) and waiting calls overall; thread-safe."""

    def __init__(self, limits: CallLimits | None = None) -> None:
        self.limits = limits or CallLimits()
        self._lock = threading.Lock()
        self._open: dict[tuple[str, CallKind], int] = {}
        self._waiting = 0

    def acquire(self, identity: str, kind: CallKind) -> Lease:
        """Count one more open call, or raise :class:`Busy` saying which bound it would cross."""
        bound = self.limits.per_identity.get(kind)
        with self._lock:
            held = self._open.get((identity, kind), 0)
            if bound is not None and held >= bound:
                raise Busy(
                    f"{identity!r} already has {held} {kind.value}s open, the most one caller "
                    f"may hold at once; retry when one ends"
                )
            if kind in WAITING_KINDS:
                if self._waiting >= self.limits.node_threads:
                    raise Busy(
                        f"coordinator busy: {self._waiting} node calls are waiting already; "
                        "retry shortly"
                    )
                self._waiting += 1
            self._open[(identity, kind)] = held + 1
        return Lease(self, identity, kind)

    def open_calls(self, identity: str, kind: CallKind) -> int:
        with self._lock:
            return self._open.get((identity, kind), 0)

    def _release(self, identity: str, kind: CallKind) -> None:
        with self._lock:
            held = self._open.get((identity, kind), 0) - 1
            if held > 0:
                self._open[(identity, kind)] = held
            else:
                self._open.pop((identity, kind), None)
            if kind in WAITING_KINDS:
                self._waiting -= 1


class Lease:
    """One counted call; :meth:`release` is idempotent, so both the handler's ``finally`` and
    the call's end-of-RPC callback may run it."""

    def __init__(self, limiter: CallLimiter, identity: str, kind: CallKind) -> None:
        self._limiter = limiter
        self._key = (identity, kind)
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._limiter._release(*self._key)
