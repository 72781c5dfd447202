"""An in-memory stand-in for a gRPC channel: the transport seam's twin (CONVENTIONS §8).

Why it exists: unit tests and simulations need a coordinator and many nodes talking without
sockets, ports, TLS handshakes or a server thread pool. :class:`InMemoryChannel` dispatches each
call in this process to the coordinator's own generic method handlers, as a given peer
certificate, and keeps what matters for correctness on the path:

- bytes on the wire: the caller's serializer, then the handler's deserializer (and back), so a
  message that would not survive protobuf, or a raw-bytes method fed something else, fails here;
- identity: the servicer context presents the certificate through ``auth_context()`` exactly as
  gRPC does after a TLS handshake, so revocation and role checks run unchanged;
- failure: ``context.abort`` and handler exceptions come back as :class:`InMemoryRpcError`, a
  ``grpc.RpcError`` with ``code()`` and ``details()``, which ``medfed.transport.errors`` maps onto
  medfed's error tree like a real one.

What it does not model: flow control, message size limits, server interceptors, concurrency
limits, ``grpc.channel_ready_future`` (a channel has no connectivity to subscribe to; do not pass
one to ``medfed.coordinator.client.wait_for_ready``), and the TLS handshake itself (chain and
validity checks are gRPC's; here the certificate is taken as presented). End-to-end tests stay on
real gRPC with mutual TLS for exactly these reasons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeAlias, TypeVar

import grpc

Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None
Metadata = tuple[tuple[str, str | bytes], ...]
Kind = Literal["unary_unary", "unary_stream", "stream_unary", "stream_stream"]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
T = TypeVar("T")

_END = object()


class InMemoryRpcError(grpc.RpcError):
    """What a failed in-memory call raises: a status code and details, like gRPC's errors."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: Metadata


class _Abort(Exception):
    """Raised by ``context.abort``; like gRPC's, a plain Exception the handler should not catch."""


class _Context:
    """The parts of ``grpc.ServicerContext`` a servicer uses, for one call."""

    def __init__(self, channel: InMemoryChannel, metadata: Metadata, timeout: float | None) -> None:
        self._channel = channel
        self._metadata = metadata
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._cancelled = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self.aborted: tuple[grpc.StatusCode, str] | None = None
        self.set_status = (grpc.StatusCode.OK, "")  # what set_code/set_details said

    def auth_context(self) -> dict[str, list[bytes]]:
        return {
            "x509_pem_cert": [self._channel.peer_cert_pem],
            "transport_security_type": [b"in-memory"],
        }

    def peer(self) -> str:
        return "in-memory"

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        expired = self._deadline is not None and time.monotonic() >= self._deadline
        return not (self._cancelled.is_set() or self._channel.closed or expired)

    def cancel(self) -> None:
        self._cancelled.set()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Runs ``callback`` when the call ends, however it ends (as gRPC does)."""
        self._callbacks.append(callback)
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.aborted = (code, details)
        raise _Abort(details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.set_status = (code, self.set_status[1])

    def set_details(self, details: str) -> None:
        self.set_status = (self.set_status[0], details)

    def send_initial_metadata(self, metadata: Metadata) -> None:
        pass

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        pass

    def ended(self) -> InMemoryRpcError | None:
        """How the client sees the call ended early, if it did: cancelled, closed or too late."""
        if self._cancelled.is_set():
            return InMemoryRpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        if self._channel.closed:
            return InMemoryRpcError(grpc.StatusCode.CANCELLED, "Channel closed!")
        if self.time_remaining() == 0.0:
            return InMemoryRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return None

    def finish(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class _Call:
    """One RPC: its handler and context, and the (de)serialization on both ends of the "wire"."""

    def __init__(
        self,
        handler: Handler,
        context: _Context,
        serializer: Serializer,
        deserializer: Deserializer,
    ) -> None:
        self.handler = handler
        self.context = context
        self._serializer = serializer
        self._deserializer = deserializer

    def encode(self, message: Any) -> bytes:
        return _encode(message, self._serializer, "Exception serializing request!")

    def decode(self, raw: bytes) -> Any:
        return _decode(raw, self.handler.request_deserializer, "Exception deserializing request!")

    def request(self, message: Any) -> Any:
        return self.decode(self.encode(message))

    def requests(self, messages: Iterable[Any]) -> Iterator[Any]:
        return (self.request(message) for message in messages)

    def response(self, message: Any) -> Any:
        raw = _encode(message, self.handler.response_serializer, "Failed to serialize response!")
        return _decode(raw, self._deserializer, "Exception deserializing response!")

    def serve(self, step: Callable[[], T]) -> T:
        """Run server-side code, mapping what escapes it onto a status, as gRPC's server does."""
        try:
            result = step()
        except InMemoryRpcError:
            raise
        except Exception as exc:
            if self.context.aborted is not None:
                raise InMemoryRpcError(*self.context.aborted) from None
            raise InMemoryRpcError(
                grpc.StatusCode.UNKNOWN, f"Exception calling application: {exc}"
            ) from exc
        if self.context.aborted is not None:  # the handler swallowed its own abort
            raise InMemoryRpcError(*self.context.aborted)
        return result

    def check_alive(self) -> None:
        error = self.context.ended()
        if error is not None:
            raise error

    def check_status(self) -> None:
        """After the handler returned: a closed channel, a passed deadline or a non-OK code the
        handler set with ``set_code`` still fail the call on the client's side."""
        self.check_alive()
        code, details = self.context.set_status
        if code is not grpc.StatusCode.OK:
            raise InMemoryRpcError(code, details)

    def unary(self, run: Callable[[], Any]) -> Any:
        """A call with one response."""
        try:
            response = self.serve(run)
            self.check_status()
            return self.response(response)
        finally:
            self.context.finish()


class _ResponseStream(Iterator[Any]):
    """A response stream, like gRPC's rendezvous: the handler starts on the first ``next``, and
    every server-side failure surfaces while iterating, as an :class:`InMemoryRpcError`."""

    def __init__(self, call: _Call, start: Callable[[], Iterable[Any]]) -> None:
        self._call = call
        self._start = start
        self._responses: Iterator[Any] | None = None
        self._done = False

    def __iter__(self) -> _ResponseStream:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            item = self._step()
        except BaseException:
            self._end()
            raise
        if item is _END:
            self._end()
            raise StopIteration
        return item

    def _step(self) -> Any:
        self._call.check_alive()
        if self._responses is None:
            start = self._start
            self._responses = self._call.serve(lambda: iter(start()))
        responses = self._responses
        item = self._call.serve(lambda: next(responses, _END))
        if item is _END:
            self._call.check_status()
            return _END
        return self._call.response(item)

    def cancel(self) -> bool:
        """Stop the call: the handler sees ``is_active() == False``; later ``next`` raises."""
        self._call.context.cancel()
        if self._responses is not None and hasattr(self._responses, "close"):
            self._responses.close()
        return True

    def is_active(self) -> bool:
        return not self._done and self._call.context.is_active()

    def _end(self) -> None:
        self._done = True
        self._call.context.finish()


class InMemoryChannel:
    """A drop-in for ``grpc.Channel`` that runs calls on ``handlers`` as ``peer_cert_pem``.

    Each call runs in the calling thread (a long-poll blocks its caller, as it would over gRPC).
    ``close()`` makes in-flight calls see ``context.is_active() == False`` and end CANCELLED.
    """

    def __init__(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]], peer_cert_pem: bytes
    ) -> None:
        self._handlers = tuple(handlers)
        self.peer_cert_pem = peer_cert_pem
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> InMemoryChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unary_unary(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> _MultiCallable:  # fmt: skip
        return self._callable(method, "unary_unary", request_serializer, response_deserializer)

    def unary_stream(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> _MultiCallable:  # fmt: skip
        return self._callable(method, "unary_stream", request_serializer, response_deserializer)

    def stream_unary(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> _MultiCallable:  # fmt: skip
        return self._callable(method, "stream_unary", request_serializer, response_deserializer)

    def stream_stream(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> _MultiCallable:  # fmt: skip
        return self._callable(method, "stream_stream", request_serializer, response_deserializer)

    def _callable(
        self, method: str, kind: Kind, serializer: Serializer, deserializer: Deserializer
    ) -> _MultiCallable:
        return _MultiCallable(self, method, kind, serializer, deserializer)

    def _open(
        self,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] | None,
    ) -> _Call:
        if self.closed:
            raise ValueError("Cannot invoke RPC on closed channel!")
        items = tuple(metadata or ())
        for generic in self._handlers:
            handler = generic.service(_CallDetails(method, items))
            if handler is not None:
                return _Call(handler, _Context(self, items, timeout), serializer, deserializer)
        raise InMemoryRpcError(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {method}")


class _MultiCallable:
    """What ``channel.unary_unary(...)`` and its siblings return: call it like gRPC's.

    A call with a response stream returns an iterator at once and runs the handler as it is
    iterated; a call with one response runs the handler and returns its reply (or raises).
    """

    def __init__(
        self,
        channel: InMemoryChannel,
        method: str,
        kind: Kind,
        serializer: Serializer,
        deserializer: Deserializer,
    ) -> None:
        self._channel = channel
        self._method = method
        self._kind = kind
        self._serializer = serializer
        self._deserializer = deserializer

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
        **_: object,
    ) -> Any:
        call = self._channel._open(
            self._method, self._serializer, self._deserializer, timeout, metadata
        )
        behavior: Callable[[Any, _Context], Any] | None = getattr(call.handler, self._kind)
        if behavior is None:
            raise InMemoryRpcError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{self._method} is not served as a {self._kind.replace('_', '-')} method",
            )
        if self._kind.startswith("stream_"):

            def start() -> Any:
                return behavior(call.requests(request), call.context)
        else:
            raw = call.encode(request)  # the client serializes before anything is sent

            def start() -> Any:
                return behavior(call.decode(raw), call.context)

        if self._kind.endswith("_stream"):
            return _ResponseStream(call, start)
        return call.unary(start)


def _encode(message: Any, serializer: Serializer, failure: str) -> bytes:
    """To bytes, as on the wire: with no serializer the message must already be ``bytes``."""
    try:
        raw = serializer(message) if serializer is not None else message
    except Exception as exc:
        raise InMemoryRpcError(grpc.StatusCode.INTERNAL, f"{failure} {exc}") from exc
    if not isinstance(raw, bytes):
        raise InMemoryRpcError(
            grpc.StatusCode.INTERNAL, f"{failure} expected bytes, got {type(raw).__name__}"
        )
    return raw


def _decode(raw: bytes, deserializer: Deserializer, failure: str) -> Any:
    try:
        return deserializer(raw) if deserializer is not None else raw
    except Exception as exc:
        raise InMemoryRpcError(grpc.StatusCode.INTERNAL, f"{failure} {exc}") from exc
