"""gRPC failures mapped onto medfed's error tree."""

from __future__ import annotations

import grpc

from medfed.errors import AuthError, TransportError

_AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def translate(error: grpc.RpcError, what: str) -> TransportError:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code in _AUTH_CODES:
        return AuthError(f"{what}: coordinator refused us: {details}")
    return TransportError(f"{what}: {code.name if code else 'error'}: {details}")
