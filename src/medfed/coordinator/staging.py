"""Staging buffers for incoming updates: how much unfolded update data the coordinator holds.

An update must arrive whole and be checked before it counts (:mod:`medfed.coordinator.uploads`),
so it is received into a buffer the size of the model. These rules bound what that costs:

* at most ``size`` buffers exist, and one node holds at most one: a node stalling uploads in
  several studies at once cannot take every buffer and starve the other hospitals;
* uploads that stream in fast are received one after another: while one is arriving at full
  speed the next waits (gRPC flow control holds its sender back). Only when no upload being
  received keeps the line (one stalled, or slower than ``LINE_RATE``, as over a hospital's
  uplink) is another let in, so a slow or hostile node never holds the others back;
* the next upload starts arriving while the previous one is checked and folded into the round's
  sum, but takes at most ``FOLD_OVERLAP_BYTES`` before that fold ends (the fold is our own CPU
  work, so this wait is short and cannot be prolonged by any node);
* every upload gets a fresh, untouched buffer (the OS maps a page when the first byte lands in
  it), freed as soon as it is folded: a stalled upload costs what it sent, not the model's size.
  Reusing buffers would keep all of each resident to save a few ms of page faults per 40 MB.

When hospitals upload at once the coordinator then holds about one model of staged bytes
instead of ``size`` of them (at 10M float32 parameters, 40 MB of its peak), without losing the
overlap of receiving with folding. Receiving two fast streams side by side would not be faster:
folds are serialized by the round's lock anyway, and a CPU-bound coordinator takes two TLS
streams no faster than one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from medfed.coordinator.rounds import Rejected

LINE_RATE = 16 << 20
"""Bytes per second an upload must average to keep the next one waiting: well below a LAN or
loopback upload, which the coordinator's CPU limits (70-270 MB/s measured on the 2-vCPU bench
machine while other jobs loaded it), above a 100 Mbit/s hospital uplink (12 MB/s), whose
upload leaves the coordinator idle enough to take another beside it."""
LINE_GRACE_S = 0.25
"""How long an upload keeps the line before its average rate is judged."""
LINE_STALL_S = 1.0
"""An upload that delivers nothing for this long gives up the line whatever its average."""
FOLD_OVERLAP_BYTES = 8 << 20
"""What an upload may receive while another buffer is still being checked and folded."""
_POLL_S = LINE_GRACE_S / 4


@dataclass
class _Upload:
    started: float
    last: float
    received: int = 0
    full: bool = False
    """Received whole: being checked and folded, no longer arriving."""

    def keeps_line(self, now: float) -> bool:
        if self.full or now - self.last >= LINE_STALL_S:
            return False
        elapsed = now - self.started
        return elapsed < LINE_GRACE_S or self.received >= LINE_RATE * elapsed


class Staging:
    """One upload's buffer: ``view`` to fill; ``frames`` passes the upload's messages through
    (reporting progress, pausing while another buffer's fold ends); ``received`` once it is full
    (only the check and the fold are left)."""

    def __init__(self, pool: StagingPool, ticket: int, view: memoryview) -> None:
        self._pool = pool
        self._ticket = ticket
        self.view = view

    def frames(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        source = iter(frames)
        while True:
            self._pool._wait_for_fold(self._ticket)  # before pulling: flow control holds back
            raw = next(source, None)
            if raw is None:
                return
            self._pool._progress(self._ticket, len(raw))
            yield raw

    def received(self) -> None:
        self._pool._full(self._ticket)


class StagingPool:
    """At most ``size`` staging buffers at a time, each allocated for one upload."""

    def __init__(self, size: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self._free = size
        self._owners: set[str] = set()
        self._uploads: dict[int, _Upload] = {}
        self._tickets = itertools.count()
        self._clock = clock
        self._cond = threading.Condition()

    @contextmanager
    def buffer(self, nbytes: int, timeout_s: float, owner: str = "") -> Iterator[Staging]:
        deadline = self._clock() + timeout_s
        with self._cond:
            while not self._admits(owner):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise Rejected("coordinator busy: no staging buffer free before the deadline")
                # progress never notifies: whether the line is kept changes as time passes
                self._cond.wait(min(remaining, _POLL_S))
            self._free -= 1
            ticket = next(self._tickets)
            now = self._clock()
            self._uploads[ticket] = _Upload(started=now, last=now)
            if owner:
                self._owners.add(owner)
        try:
            buffer = np.empty(nbytes, dtype=np.uint8)  # untouched: no page until a byte lands
            yield Staging(self, ticket, buffer.data)
        finally:
            with self._cond:
                del self._uploads[ticket]
                self._owners.discard(owner)
                self._free += 1
                self._cond.notify_all()

    @property
    def receiving(self) -> int:
        """Uploads arriving now (admitted, not yet received whole)."""
        with self._cond:
            return sum(not u.full for u in self._uploads.values())

    def _admits(self, owner: str) -> bool:
        if self._free <= 0 or (owner and owner in self._owners):
            return False
        now = self._clock()
        return not any(u.keeps_line(now) for u in self._uploads.values())

    def _wait_for_fold(self, ticket: int) -> None:
        with self._cond:
            me = self._uploads[ticket]
            paused = self._clock()
            while me.received >= FOLD_OVERLAP_BYTES and any(u.full for u in self._uploads.values()):
                self._cond.wait(_POLL_S)
            waited = self._clock() - paused
            if waited > 0:  # the pause was ours: it neither stalls the sender nor slows its rate
                me.started += waited
                me.last += waited

    def _progress(self, ticket: int, nbytes: int) -> None:
        with self._cond:
            upload = self._uploads[ticket]
            upload.last = self._clock()
            upload.received += nbytes

    def _full(self, ticket: int) -> None:
        with self._cond:
            self._uploads[ticket].full = True
            self._cond.notify_all()
