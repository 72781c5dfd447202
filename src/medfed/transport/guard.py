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
from medfed.transport.tarpit import Tarpit
from medfed.transport.watchdog import (
    StreamWatchdog,
    WatchedRequests,
    WatchedStream,
    watched_responses,
)

log = logging.getLogger("medfed.transport")

Parse = Callable[[bytes], Any]
Serialize = Callable[[Any], bytes]
Check = Callable[[Any], None]
"""Raises :class:`ProtocolError` saying what in a parsed request is out of bounds."""
Behavior = Callable[[Any, grpc.ServicerContext], Any]
Send = Callable[[Any], None]
"""gRPC's callback for a non-blocking handler: a message, or None to end the call."""


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


@dataclass
class Admitted:
    """A call past the guard: its caller, its counted share, its request (parsed, or the watched
    request stream) and, for a stream, the watchdog's view of it."""

    me: Identity
    lease: Lease
    request: Any = None
    stream: WatchedStream | None = None


Admit = Callable[[Any, grpc.ServicerContext], Admitted]
Run = Callable[[Admitted, grpc.ServicerContext], Iterator[bytes]]
"""An admitted call's response messages, serialized."""


class Guard:
    """Builds gRPC method handlers that admit a call before handing it to the servicer.

    On the server every method is registered as response-streaming and non-blocking (gRPC's
    ``experimental_non_blocking``; a unary reply is one message then the status, which is what
    a unary client reads): an admitted call is served on its pool thread as before, while a
    refused one returns that thread at once and gets its status from the :class:`Tarpit` later.
    Each handler also carries a plain blocking variant in the slot its clients call it by, which
    is what :class:`medfed.transport.inmemory.InMemoryChannel` dispatches to.
    """

    def __init__(
        self,
        auth: PeerAuthorizer,
        limiter: CallLimiter | None = None,
        watchdog: StreamWatchdog | None = None,
        tarpit: Tarpit | None = None,
    ) -> None:
        self.auth = auth
        self.limiter = limiter or CallLimiter()
        self.watchdog = watchdog or StreamWatchdog()
        self.tarpit = tarpit or Tarpit()
        self.malformed = ThrottledLog(log)

    def unary(
        self, method: str, behavior: Behavior, parse: Parse, reply: Serialize, rule: MethodRule
    ) -> grpc.RpcMethodHandler[Any, Any]:
        def admit(raw: bytes, context: grpc.ServicerContext) -> Admitted:
            return self._admit_message(method, raw, parse, rule, context)

        def run(call: Admitted, context: grpc.ServicerContext) -> Iterator[bytes]:
            yield reply(behavior(call.request, context))

        return self._handler(admit, run, streams_in=False, streams_out=False)

    def stream_in(
        self,
        method: str,
        behavior: Behavior,
        parse: Parse | None,
        reply: Serialize,
        rule: MethodRule,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``parse`` None: the servicer gets the raw messages (framed upload chunks)."""

        def admit(raw: Iterator[bytes], context: grpc.ServicerContext) -> Admitted:
            call = self._admit(rule, context)
            call.stream = self._watch(context, f"{method} from {call.me.name}", call.me, rule)
            requests: Iterator[Any] = WatchedRequests(call.stream, raw)
            call.request = requests if parse is None else _parse_each(requests, parse, method)
            return call

        def run(call: Admitted, context: grpc.ServicerContext) -> Iterator[bytes]:
            yield reply(behavior(call.request, context))

        return self._handler(admit, run, streams_in=True, streams_out=False)

    def stream_out(
        self,
        method: str,
        behavior: Behavior,
        parse: Parse,
        reply: Serialize | None,
        rule: MethodRule,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``reply`` None: the servicer yields raw messages (framed model chunks)."""

        def admit(raw: bytes, context: grpc.ServicerContext) -> Admitted:
            call = self._admit_message(method, raw, parse, rule, context)
            if rule.watch:
                call.stream = self._watch(context, f"{method} to {call.me.name}", call.me, rule)
            return call

        def run(call: Admitted, context: grpc.ServicerContext) -> Iterator[bytes]:
            responses: Iterator[bytes] = behavior(call.request, context)
            if reply is not None:
                responses = map(reply, responses)
            if call.stream is not None:
                responses = watched_responses(call.stream, responses)
            yield from responses

        return self._handler(admit, run, streams_in=False, streams_out=True)

    def _handler(
        self, admit: Admit, run: Run, *, streams_in: bool, streams_out: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        def blocking(request: Any, context: grpc.ServicerContext) -> bytes:
            call = admit(request, context)
            try:
                return b"".join(run(call, context))
            finally:
                self._close(call)

        def blocking_stream(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
            call = admit(request, context)
            if not context.add_callback(lambda: self._close(call)):
                self._close(call)
            try:
                yield from run(call, context)
            finally:
                self._close(call)

        def serve(
            request: Any, context: grpc.ServicerContext, send: Send | None = None
        ) -> Iterator[bytes] | None:
            if send is None:  # called as a plain generator (the in-memory twin)
                return blocking_stream(request, context)
            self._serve(admit, run, request, context, send)
            return None

        serve.experimental_non_blocking = True  # type: ignore[attr-defined]
        if streams_in:
            handler = grpc.stream_stream_rpc_method_handler(serve)
        else:
            handler = grpc.unary_stream_rpc_method_handler(serve)
        if streams_out:
            return handler
        slot = "stream_unary" if streams_in else "unary_unary"
        replace = handler._replace  # type: ignore[attr-defined]  # gRPC's handlers are namedtuples
        twin: grpc.RpcMethodHandler[Any, Any] = replace(**{slot: blocking})
        return twin

    def _serve(
        self, admit: Admit, run: Run, request: Any, context: grpc.ServicerContext, send: Send
    ) -> None:
        """Serve one call on this pool thread, or hand its refusal to the tarpit and return."""
        try:
            call = admit(request, context)
        except Exception:
            code = getattr(context, "code", lambda: None)()  # set by the refusing abort
            refused = code is not None and code != grpc.StatusCode.OK
            if refused and self.tarpit.hold(lambda: send(None)):
                return
            raise
        try:
            for message in run(call, context):
                if not context.is_active():
                    break
                send(message)
        finally:
            self._close(call)
        send(None)

    def _close(self, call: Admitted) -> None:
        call.lease.release()
        if call.stream is not None:
            self.watchdog.forget(call.stream)

    def _watch(
        self, context: grpc.ServicerContext, what: str, me: Identity, rule: MethodRule
    ) -> WatchedStream:
        stream = self.watchdog.watch(context, what)
        if rule.role is Role.NODE:
            stream.stop_when(self._revoked(me))
        return stream

    def _admit_message(
        self, method: str, raw: bytes, parse: Parse, rule: MethodRule, context: grpc.ServicerContext
    ) -> Admitted:
        call = self._admit(rule, context)
        try:
            call.request = self._parse(method, raw, parse, rule, call.me, context)
        except BaseException:
            call.lease.release()
            raise
        return call

    def _admit(self, rule: MethodRule, context: grpc.ServicerContext) -> Admitted:
        me = self.auth.require(context, rule.role)
        try:
            return Admitted(me, self.limiter.acquire(me.name, rule.kind))
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
