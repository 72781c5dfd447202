"""What every call passes before its handler runs: who, how many, how big, then parsing.

Order matters. gRPC's own request parsing runs before any handler, so a peer can make the server
parse whatever it likes, revoked or not; and in grpcio (1.85 at least) a unary request that fails
to parse is aborted twice, which leaks the call's state (~20 KB) on every such request and logs a
traceback each time (see ``bench/grpc_junk_leak.py``). So every method is registered to take raw
bytes, and :class:`Guard` does, in this order:

1. identity and role from the TLS certificate, revocation included (:class:`PeerAuthorizer`);
2. the caller's share of open calls (:class:`CallLimiter`): refused at once beyond it;
3. the request's size against the method's cap, then parsing; a malformed request is answered
   ``INVALID_ARGUMENT`` and logged at most once a minute per caller and method;
4. the method's own bounds on what the request announces (``MethodRule.check``);
5. streams: timed by the :class:`StreamWatchdog`, and a node's stream is cut if its certificate
   is revoked meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from medfed.errors import ProtocolError
from medfed.pki.identity import Identity, Role
from medfed.transport.auth import PeerAuthorizer, abort
from medfed.transport.limits import Busy, CallKind, CallLimiter, Lease
from medfed.transport.watchdog import StreamWatchdog, WatchedRequests, watched_responses

log = logging.getLogger("medfed.transport")

Parse = Callable[[bytes], Any]
Serialize = Callable[[Any], bytes]
Check = Callable[[Any], None]
"""Raises :class:`ProtocolError` saying what in a parsed request is out of bounds."""
Behavior = Callable[[Any, grpc.ServicerContext], Any]


@dataclass(frozen=True)
class MethodRule:
    """Who may call a method, which share of calls it counts against, and how big it may be."""

    role: Role
    kind: CallKind
    max_request_bytes: int
    check: Check | None = None
    watch: bool = True
    """Streams only: time the stream (False for a stream that is idle by design)."""


class ThrottledLog:
    """At most one line per key each ``period_s``, saying how many it held back meanwhile: a
    peer sending junk in a loop must not be able to fill the coordinator's disk."""

    def __init__(
        self,
        logger: logging.Logger,
        period_s: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._period_s = period_s
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` logged within the period; True when it logged."""
        now = self._clock()
        with self._lock:
            last, held = self._last.get(key, (float("-inf"), 0))
            if now - last < self._period_s:
                self._last[key] = (last, held + 1)
                return False
            if len(self._last) >= self._max_keys and key not in self._last:
                self._last.clear()  # bounded memory; at worst one extra line per key
            self._last[key] = (now, 0)
        suffix = f" ({held} more like it since the last report)" if held else ""
        self._logger.warning("%s%s", message, suffix)
        return True


class Guard:
    """Builds gRPC method handlers that admit a call before handing it to the servicer."""

    def __init__(
        self,
        auth: PeerAuthorizer,
        limiter: CallLimiter | None = None,
        watchdog: StreamWatchdog | None = None,
    ) -> None:
        self.auth = auth
        self.limiter = limiter or CallLimiter()
        self.watchdog = watchdog or StreamWatchdog()
        self.malformed = ThrottledLog(log)

    def unary(
        self, method: str, behavior: Behavior, parse: Parse, reply: Serialize, rule: MethodRule
    ) -> grpc.RpcMethodHandler[Any, Any]:
        def handle(raw: bytes, context: grpc.ServicerContext) -> Any:
            me, lease = self._admit(rule, context)
            try:
                return behavior(self._parse(method, raw, parse, rule, me, context), context)
            finally:
                lease.release()

        return grpc.unary_unary_rpc_method_handler(handle, None, reply)

    def stream_in(
        self,
        method: str,
        behavior: Behavior,
        parse: Parse | None,
        reply: Serialize,
        rule: MethodRule,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``parse`` None: the servicer gets the raw messages (framed upload chunks)."""

        def handle(raw: Iterator[bytes], context: grpc.ServicerContext) -> Any:
            me, lease = self._admit(rule, context)
            stream = self.watchdog.watch(context, f"{method} from {me.name}")
            if rule.role is Role.NODE:
                stream.stop_when(self._revoked(me))
            try:
                requests: Iterator[Any] = WatchedRequests(stream, raw)
                if parse is not None:
                    requests = _parse_each(requests, parse, method)
                return behavior(requests, context)
            finally:
                self.watchdog.forget(stream)
                lease.release()

        return grpc.stream_unary_rpc_method_handler(handle, None, reply)

    def stream_out(
        self,
        method: str,
        behavior: Behavior,
        parse: Parse,
        reply: Serialize | None,
        rule: MethodRule,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``reply`` None: the servicer yields raw messages (framed model chunks)."""

        def handle(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
            me, lease = self._admit(rule, context)
            if not context.add_callback(lease.release):  # a cancelled reader never resumes us
                lease.release()
            try:
                responses = behavior(self._parse(method, raw, parse, rule, me, context), context)
                if not rule.watch:
                    yield from responses
                    return
                stream = self.watchdog.watch(context, f"{method} to {me.name}")
                try:
                    if rule.role is Role.NODE:
                        stream.stop_when(self._revoked(me))
                    yield from watched_responses(stream, responses)
                finally:
                    self.watchdog.forget(stream)
            finally:
                lease.release()

        return grpc.unary_stream_rpc_method_handler(handle, None, reply)

    def _admit(self, rule: MethodRule, context: grpc.ServicerContext) -> tuple[Identity, Lease]:
        me = self.auth.require(context, rule.role)
        try:
            return me, self.limiter.acquire(me.name, rule.kind)
        except Busy as exc:
            abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    def _parse(
        self,
        method: str,
        raw: bytes,
        parse: Parse,
        rule: MethodRule,
        me: Identity,
        context: grpc.ServicerContext,
    ) -> Any:
        if len(raw) > rule.max_request_bytes:
            self.malformed.warning(
                f"{me.name} {method} size",
                f"{me.name} sent a {len(raw)}-byte {method} request (at most "
                f"{rule.max_request_bytes} bytes): refused",
            )
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a {method} request may be at most {rule.max_request_bytes} bytes, "
                f"this one is {len(raw)}",
            )
        try:
            request = parse(raw)
        except (DecodeError, ValueError):
            self.malformed.warning(
                f"{me.name} {method}", f"{me.name} sent a malformed {method} request: refused"
            )
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed {method} request")
        if rule.check is not None:
            try:
                rule.check(request)
            except ProtocolError as exc:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return request

    def _revoked(self, me: Identity) -> Callable[[], str | None]:
        def condition() -> str | None:
            if self.auth.is_revoked(me):
                return f"certificate of {me.name!r} was revoked"
            return None

        return condition


def _parse_each(raw: Iterator[bytes], parse: Parse, method: str) -> Iterator[Any]:
    for item in raw:
        try:
            yield parse(item)
        except (DecodeError, ValueError):
            raise ProtocolError(f"malformed message in the {method} stream") from None
