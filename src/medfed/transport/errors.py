"""gRPC failures mapped onto medfed's error tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from medfed.errors import AuthError, TransportError

_AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def translate(error: grpc.RpcError, what: str) -> TransportError:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code in _AUTH_CODES:
        return AuthError(f"{what}: coordinator refused us: {details}")
    return TransportError(f"{what}: {code.name if code else 'error'}: {details}")


@contextmanager
def rpc_errors(what: str) -> Iterator[None]:
    """Map a failed call onto medfed's tree; a call on a closed channel is a transport error."""
    try:
        yield
    except grpc.RpcError as exc:
        raise translate(exc, what) from exc
    except ValueError as exc:
        message = str(exc).lower()  # gRPC says "on closed channel" or "Channel closed!"
        if "closed channel" not in message and "channel closed" not in message:
            raise
        raise TransportError(f"{what}: channel closed") from exc
