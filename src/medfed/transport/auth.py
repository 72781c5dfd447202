"""Who is calling: the identity comes from the verified TLS peer certificate, never from a message.

gRPC has already checked the chain and validity dates during the handshake (a certificate from
another CA, an expired one, or none at all never reaches a handler). What remains is checked here
on every call: the certificate is not revoked, and its role may call this service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NoReturn

import grpc

from medfed.errors import IdentityError
from medfed.pki.identity import Identity, Role, identity_from_pem
from medfed.pki.revocation import CrlWatcher


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: grpc context.abort raises")  # pragma: no cover


MAX_CACHED_IDENTITIES = 4096


class PeerAuthorizer:
    """Maps a call's TLS peer to an :class:`Identity` and enforces revocation and roles.

    Identities are cached by certificate bytes (revocation is still checked on every call): a
    peer's certificate does not change within a connection, and parsing it on every call would
    make each refused call of a flood cost a full X.509 parse.
    """

    def __init__(
        self, crl: CrlWatcher, on_revoked: Callable[[Identity], None] | None = None
    ) -> None:
        """``on_revoked`` hears of each refused revoked certificate (the ledger records it)."""
        self._crl = crl
        self._on_revoked = on_revoked
        self._lock = threading.Lock()
        self._identities: dict[bytes, Identity] = {}

    def identify(self, context: grpc.ServicerContext) -> Identity:
        pems: list[bytes] = list(context.auth_context().get("x509_pem_cert", []))  # type: ignore[arg-type]
        if not pems:
            abort(context, grpc.StatusCode.UNAUTHENTICATED, "no client certificate presented")
        try:
            identity = self._identity(pems[0])
        except IdentityError as exc:
            abort(context, grpc.StatusCode.UNAUTHENTICATED, f"unusable certificate: {exc}")
        if self.is_revoked(identity):
            abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                f"certificate {identity.serial:x} of {identity.role.value} {identity.name!r} "
                "is revoked by the consortium CA",
            )
        return identity

    @staticmethod
    def certificate(context: grpc.ServicerContext) -> bytes:
        """The peer's certificate (PEM) of a call that :meth:`identify` already admitted."""
        pems: list[bytes] = list(context.auth_context().get("x509_pem_cert", []))  # type: ignore[arg-type]
        return pems[0] if pems else b""

    def require(self, context: grpc.ServicerContext, role: Role) -> Identity:
        identity = self.identify(context)
        if identity.role is not role:
            abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"a {identity.role.value} certificate ({identity.name!r}) cannot call "
                f"{role.value} services",
            )
        return identity

    def _identity(self, pem: bytes) -> Identity:
        with self._lock:
            cached = self._identities.get(pem)
        if cached is not None:
            return cached
        identity = identity_from_pem(pem)
        with self._lock:
            if len(self._identities) >= MAX_CACHED_IDENTITIES:
                self._identities.clear()
            self._identities[pem] = identity
        return identity

    def is_revoked(self, identity: Identity) -> bool:
        self._crl.refresh()
        revoked = self._crl.is_revoked(identity.serial)
        if revoked and self._on_revoked is not None:
            self._on_revoked(identity)
        return revoked
