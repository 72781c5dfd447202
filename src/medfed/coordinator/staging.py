"""Staging buffers for incoming updates: how much unfolded update data the coordinator holds.

An update must arrive whole and be checked before it counts (:mod:`medfed.coordinator.uploads`),
so it is received into a buffer the size of the model. Three rules bound what that costs:

* at most ``size`` buffers exist, and one node holds at most one: a node stalling uploads in
  several studies at once cannot take every buffer and starve the other hospitals;
* uploads that stream in fast are received one after another: while one is arriving at full
  speed the next waits (gRPC flow control holds its sender back), and each buffer's fold into the
  round's sum overlaps the next upload's arrival. When hospitals upload at once the coordinator
  then holds about one model of staged bytes instead of ``size`` (at 10M float32 parameters, 40 MB
  of its peak), for no loss of speed: the fold is serialized by the round's lock anyway, and on
  a CPU-bound coordinator two TLS streams arrive no faster than one. Only when no upload being
  received keeps the line (one stalled, or slower than ``LINE_RATE``, as over a hospital's
  uplink) is another let in, so a slow or hostile node never holds the others back;
* buffers are allocated untouched (the OS maps a page when the first byte lands in it), so a
  stalled upload costs what it sent, not the model's size.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.coordinator.rounds import Rejected

LINE_RATE = 32 << 20
"""Bytes per second an upload must average to keep the next one waiting. A coordinator-bound
upload on a LAN or loopback runs at hundreds of MB/s; one limited by its own link (100 Mbit/s:
12 MB/s) gains nothing from exclusivity, so others are received beside it."""
LINE_GRACE_S = 0.25
"""How long an upload keeps the line before its average rate is judged."""
LINE_STALL_S = 0.5
"""An upload that delivers nothing for this long gives up the line whatever its average."""


@dataclass
class _Receiving:
    started: float
    last: float
    received: int = 0

    def keeps_line(self, now: float) -> bool:
        if now - self.last >= LINE_STALL_S:
            return False
        elapsed = now - self.started
        return elapsed < LINE_GRACE_S or self.received >= LINE_RATE * elapsed


class Staging:
    """One upload's buffer: ``view`` to fill; ``frames`` passes the upload's messages through,
    reporting progress; ``received`` once it is full (only the check and the fold are left)."""

    def __init__(self, pool: StagingPool, ticket: int, view: memoryview) -> None:
        self._pool = pool
        self._ticket = ticket
        self.view = view

    def frames(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        for raw in frames:
            self._pool._progress(self._ticket, len(raw))
            yield raw

    def received(self) -> None:
        self._pool._done(self._ticket)


class StagingPool:
    """At most ``size`` staging buffers, allocated on demand and freed when no upload waits."""

    def __init__(self, size: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self._free: list[npt.NDArray[np.uint8] | None] = [None] * size
        self._owners: set[str] = set()
        self._receiving: dict[int, _Receiving] = {}
        self._tickets = itertools.count()
        self._waiting = 0
        self._clock = clock
        self._cond = threading.Condition()

    @contextmanager
    def buffer(self, nbytes: int, timeout_s: float, owner: str = "") -> Iterator[Staging]:
        deadline = self._clock() + timeout_s
        with self._cond:
            self._waiting += 1
            try:
                while not self._admits(owner):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise Rejected(
                            "coordinator busy: no staging buffer free before the deadline"
                        )
                    # progress never notifies: whether the line is kept changes as time passes
                    self._cond.wait(min(remaining, LINE_GRACE_S / 4))
            finally:
                self._waiting -= 1
            buf = self._free.pop()
            ticket = next(self._tickets)
            now = self._clock()
            self._receiving[ticket] = _Receiving(started=now, last=now)
            if owner:
                self._owners.add(owner)
        try:
            if buf is None or buf.size < nbytes:
                buf = np.empty(nbytes, dtype=np.uint8)  # untouched: no page until a byte lands
            yield Staging(self, ticket, buf.data[:nbytes])
        finally:
            with self._cond:
                self._receiving.pop(ticket, None)
                self._owners.discard(owner)
                self._free.append(buf if self._waiting else None)
                self._cond.notify_all()

    @property
    def receiving(self) -> int:
        """Uploads being received now (not yet full)."""
        with self._cond:
            return len(self._receiving)

    def _admits(self, owner: str) -> bool:
        if not self._free or (owner and owner in self._owners):
            return False
        now = self._clock()
        return not any(r.keeps_line(now) for r in self._receiving.values())

    def _progress(self, ticket: int, nbytes: int) -> None:
        with self._cond:
            state = self._receiving.get(ticket)
            if state is not None:
                state.last = self._clock()
                state.received += nbytes

    def _done(self, ticket: int) -> None:
        with self._cond:
            self._receiving.pop(ticket, None)
            self._cond.notify_all()
