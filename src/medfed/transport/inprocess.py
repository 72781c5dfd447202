"""An in-process stand-in for a gRPC channel: the transport seam's twin (CONVENTIONS §8).

Calls made through :class:`InProcessChannel` run the coordinator's own method handlers in this
process, with the same serializers and deserializers on both sides and a servicer context that
presents a given peer certificate, so authentication, roles and framing behave as over the wire.
It exists for unit tests and simulations that need many nodes without sockets or TLS handshakes;
end-to-end tests stay on real gRPC with mutual TLS. ``grpc.channel_ready_future`` does not apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None


class InProcessRpcError(grpc.RpcError):
    """What a failed in-process call raises: a status code and details, like gRPC's errors."""

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
    invocation_metadata: tuple[tuple[str, str], ...] = ()


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Context:
    """The parts of ``grpc.ServicerContext`` medfed's servicers use."""

    def __init__(self, channel: InProcessChannel, timeout: float | None) -> None:
        self._channel = channel
        self._deadline = time.monotonic() + timeout if timeout is not None else None
        self._cancelled = False

    def auth_context(self) -> dict[str, list[bytes]]:
        return {
            "x509_pem_cert": [self._channel.peer_cert_pem],
            "transport_security_type": [b"in-process"],
        }

    def peer(self) -> str:
        return "in-process"

    def is_active(self) -> bool:
        return not (self._cancelled or self._channel.closed or self.time_remaining() == 0.0)

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def cancel(self) -> None:
        self._cancelled = True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Abort(code, details)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return True

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def set_code(self, code: grpc.StatusCode) -> None:
        pass

    def set_details(self, details: str) -> None:
        pass


class InProcessChannel:
    """Runs ``unary_unary``, ``unary_stream`` and ``stream_unary`` calls on generic handlers."""

    def __init__(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]], peer_cert_pem: bytes
    ) -> None:
        self._handlers = tuple(handlers)
        self.peer_cert_pem = peer_cert_pem
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> InProcessChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unary_unary(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> Callable[..., Any]:  # fmt: skip
        def call(request: Any, timeout: float | None = None, **__: object) -> Any:
            handler, context = self._open(method, timeout)
            incoming = _convert(request, request_serializer, handler.request_deserializer)
            response = _run(lambda: handler.unary_unary(incoming, context))
            return _convert(response, handler.response_serializer, response_deserializer)

        return call

    def unary_stream(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> Callable[..., Iterator[Any]]:  # fmt: skip
        def call(request: Any, timeout: float | None = None, **__: object) -> Iterator[Any]:
            handler, context = self._open(method, timeout)
            incoming = _convert(request, request_serializer, handler.request_deserializer)
            responses = _run(lambda: handler.unary_stream(incoming, context))
            return _stream(responses, handler.response_serializer, response_deserializer)

        return call

    def stream_unary(
        self, method: str, request_serializer: Serializer = None,
        response_deserializer: Deserializer = None, **_: object,
    ) -> Callable[..., Any]:  # fmt: skip
        def call(requests: Iterator[Any], timeout: float | None = None, **__: object) -> Any:
            handler, context = self._open(method, timeout)
            converted = (
                _convert(r, request_serializer, handler.request_deserializer) for r in requests
            )
            response = _run(lambda: handler.stream_unary(converted, context))
            return _convert(response, handler.response_serializer, response_deserializer)

        return call

    def _open(self, method: str, timeout: float | None) -> tuple[Any, _Context]:
        if self.closed:
            raise ValueError("Cannot invoke RPC on closed channel!")
        for generic in self._handlers:
            handler = generic.service(_CallDetails(method))
            if handler is not None:
                return handler, _Context(self, timeout)
        raise InProcessRpcError(grpc.StatusCode.UNIMPLEMENTED, f"method {method} not found")


def _convert(value: Any, serializer: Serializer, deserializer: Deserializer) -> Any:
    """Through bytes, as on the wire: serializer None means the value already is bytes."""
    raw = serializer(value) if serializer is not None else value
    return deserializer(raw) if deserializer is not None else raw


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except _Abort as exc:
        raise InProcessRpcError(exc.code, exc.details) from None
    except InProcessRpcError:
        raise
    except Exception as exc:
        raise InProcessRpcError(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}") from exc


_END = object()


def _stream(
    responses: Iterator[Any], serializer: Serializer, deserializer: Deserializer
) -> Iterator[Any]:
    iterator = iter(responses)
    while (item := _run(lambda: next(iterator, _END))) is not _END:
        yield _convert(item, serializer, deserializer)
