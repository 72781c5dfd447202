"""Time limits on streams: a peer that stops sending (or reading) loses its call.

A synchronous gRPC handler reading a request stream blocks in ``next()`` with no timeout, and one
writing a response stream blocks while the reader does not read; either way it holds a pool thread
(and an upload holds its staging buffer) for as long as the peer likes. :class:`StreamWatchdog`
is one thread that looks at every watched stream a few times a second and cancels the call
(``context.cancel()``, which wakes the blocked handler with an error) when:

- the first message has not arrived within ``first_message_s`` (an upload's header);
- the peer has kept the handler waiting ``idle_s`` for one message;
- after ``grace_s`` of waiting on the peer in total, it has moved fewer than
  ``min_bytes_per_s`` on average (a trickle that is never quite idle);
- a condition bound to the stream says stop: its round closed, its certificate was revoked.

Only time spent waiting *on the peer* counts: an upload the coordinator makes wait (for a staging
buffer) is not the node's fault. A request stream cut this way raises :class:`StreamCut`, a
:class:`ProtocolError` that names the reason, so the code reading it rejects the reply with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from medfed.errors import ProtocolError

log = logging.getLogger("medfed.transport")

StopCondition = Callable[[], str | None]
"""Returns why a stream must stop now, or None to let it go on."""


class StreamCut(ProtocolError):
    """A stream the watchdog cut, or one the peer cancelled; the message says which and why."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True)
class StreamRules:
    first_message_s: float = 10.0
    idle_s: float = 30.0
    min_bytes_per_s: float = 16 * 1024
    grace_s: float = 30.0


class WatchedStream:
    """The watchdog's view of one call: what it waits for and since when."""

    def __init__(self, context: Cancellable, what: str, rules: StreamRules) -> None:
        self._context = context
        self.what = what
        self.rules = rules
        self._lock = threading.Lock()
        self._waiting_since: float | None = None
        self._peer_s = 0.0
        self.messages = 0
        self.bytes = 0
        self.cut_reason: str | None = None
        self._conditions: list[StopCondition] = []

    def stop_when(self, condition: StopCondition) -> None:
        """Cut the stream as soon as ``condition`` gives a reason (checked each tick)."""
        with self._lock:
            self._conditions.append(condition)

    def begin_wait(self, now: float) -> None:
        with self._lock:
            self._waiting_since = now

    def end_wait(self, now: float, nbytes: int) -> None:
        with self._lock:
            if self._waiting_since is not None:
                self._peer_s += now - self._waiting_since
            self._waiting_since = None
            self.messages += 1
            self.bytes += nbytes

    def verdict(self, now: float) -> str | None:
        """Why this stream must be cut now, or None."""
        with self._lock:
            conditions = list(self._conditions)
            since, messages, nbytes = self._waiting_since, self.messages, self.bytes
            peer_s = self._peer_s + (now - since if since is not None else 0.0)
        for condition in conditions:
            reason = condition()
            if reason:
                return reason
        return _timing_verdict(self.rules, now, since, messages, nbytes, peer_s)

    def cut(self, reason: str) -> None:
        """Cancel the call; its reader then raises :class:`StreamCut` with ``reason``."""
        with self._lock:
            if self.cut_reason is not None:
                return
            self.cut_reason = reason
        self._context.cancel()


def _timing_verdict(
    rules: StreamRules, now: float, since: float | None, messages: int, nbytes: int, peer_s: float
) -> str | None:
    if since is not None and messages == 0 and now - since > rules.first_message_s:
        return f"nothing arrived within {rules.first_message_s:g} s of opening the stream"
    if since is not None and now - since > rules.idle_s:
        return f"stalled: no message for {rules.idle_s:g} s"
    if peer_s > rules.grace_s and nbytes < rules.min_bytes_per_s * peer_s:
        return (
            f"too slow: {nbytes / peer_s / 1024:.1f} KiB/s over {peer_s:.0f} s "
            f"(at least {rules.min_bytes_per_s / 1024:g} KiB/s required)"
        )
    return None


class StreamWatchdog:
    """One daemon thread checking every watched stream each ``tick_s``."""

    def __init__(self, rules: StreamRules | None = None, tick_s: float = 0.25) -> None:
        self.rules = rules or StreamRules()
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._streams: set[WatchedStream] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="medfed-stream-watchdog", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def watch(self, context: Cancellable, what: str) -> WatchedStream:
        stream = WatchedStream(context, what, self.rules)
        with self._lock:
            self._streams.add(stream)
        return stream

    def forget(self, stream: WatchedStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def watching(self) -> int:
        with self._lock:
            return len(self._streams)

    def check(self, now: float) -> None:
        """One pass over every stream (the thread's loop body; tests call it directly)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            reason = stream.verdict(now)
            if reason and stream.cut_reason is None:
                log.warning("cutting %s: %s", stream.what, reason)
                stream.cut(reason)
                self.forget(stream)

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.check(time.monotonic())
            except Exception:  # a bug here must not stop the watchdog for every other stream
                log.exception("stream watchdog pass failed")


class WatchedRequests(Iterator[bytes]):
    """A request stream (raw messages), timed; a cut or cancelled stream raises
    :class:`StreamCut`. :meth:`stop_when` lets the handler bind conditions it learns later
    (the round an upload belongs to)."""

    def __init__(self, stream: WatchedStream, requests: Iterator[bytes]) -> None:
        self.stream = stream
        self._requests = requests

    def stop_when(self, condition: StopCondition) -> None:
        self.stream.stop_when(condition)

    def __next__(self) -> bytes:
        stream = self.stream
        if stream.cut_reason is not None:
            raise StreamCut(f"{stream.what} cut: {stream.cut_reason}")
        stream.begin_wait(time.monotonic())
        try:
            item = next(self._requests)
        except StopIteration:
            stream.end_wait(time.monotonic(), 0)
            if stream.cut_reason is not None:  # a cancel may surface as the end of the stream
                raise StreamCut(f"{stream.what} cut: {stream.cut_reason}") from None
            raise
        except grpc.RpcError:
            reason = stream.cut_reason or "the sender cancelled it"
            raise StreamCut(f"{stream.what} cut: {reason}") from None
        stream.end_wait(time.monotonic(), len(item))
        return item


def watched_responses(stream: WatchedStream, responses: Iterator[bytes]) -> Iterator[bytes]:
    """``responses`` (raw messages), timed from each hand-over until the reader takes it."""
    for item in responses:
        stream.begin_wait(time.monotonic())
        yield item
        stream.end_wait(time.monotonic(), len(item))
