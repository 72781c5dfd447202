"""Refusals answered late, on no thread: a peer flooding refused calls gets few answers a second.

A refusal answered at once costs the server a pass through gRPC's Python layer per call, and the
flooding peer simply asks again: hundreds of refused calls in flight become thousands a second,
and the honest calls queue behind them (issue 12: an honest round 4x slower under a long-poll
flood although every extra long-poll was refused). Held here for ``delay_s``, each refused call
waits on a heap instead of a pool thread, so a peer's refusals per second are bounded by its
open streams (HTTP/2 caps them per connection) divided by the delay.

At most ``capacity`` calls are held; beyond it a refusal is answered at once, so the tarpit never
holds more memory than that many calls' state.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("medfed.transport")


class Tarpit:
    """One daemon thread that runs each held ``finish`` callback ``delay_s`` after it came."""

    def __init__(
        self,
        delay_s: float = 1.0,
        capacity: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delay_s = delay_s
        self.capacity = capacity
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def hold(self, finish: Callable[[], None]) -> bool:
        """Run ``finish`` after the delay; False (nothing held) when full or stopped."""
        with self._cond:
            if self._stopped or len(self._heap) >= self.capacity:
                return False
            heapq.heappush(self._heap, (self._clock() + self.delay_s, next(self._order), finish))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="medfed-tarpit", daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def held(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        """Answer every held call now and hold no more."""
        with self._cond:
            self._stopped = True
            due = [finish for _, _, finish in self._heap]
            self._heap.clear()
            self._cond.notify()
        for finish in due:
            _run(finish)

    def release_due(self) -> int:
        """Run every callback whose time has come; returns how many (the thread's loop body)."""
        now = self._clock()
        due = []
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap)[2])
        for finish in due:
            _run(finish)
        return len(due)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                wait = self._heap[0][0] - self._clock() if self._heap else None
                if wait is None or wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
            self.release_due()


def _run(finish: Callable[[], None]) -> None:
    try:
        finish()
    except Exception:  # one call's failure must not stop the others' answers
        log.exception("answering a held refusal failed")
