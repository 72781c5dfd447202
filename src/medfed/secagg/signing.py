"""Key advertisements signed with the node's certificate key, checked against the consortium CA.

The original protocol leaves authenticating the advertised public keys to "a PKI"; medfed has one.
A node signs (study, round, name, both public keys) with the ECDSA key of its mTLS certificate and
sends the certificate along; every receiving node checks that the CA issued the certificate, that
it is valid now, that its subject is the node named and a node, and the signature. A coordinator
that substitutes a key cannot produce a valid signature and the round aborts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from medfed.errors import MedfedError, SecAggError
from medfed.pki.identity import Role, identity_from_cert
from medfed.pki.signer import ECDSA_SHA256
from medfed.secagg.messages import Advertisement, RoundParams


@dataclass(frozen=True)
class CaVerifier:
    """Checks advertisements against the consortium CA; ``now`` is read per call (a parameter in
    tests)."""

    ca: x509.Certificate

    @classmethod
    def from_file(cls, ca_path: Path) -> CaVerifier:
        return cls(x509.load_pem_x509_certificate(ca_path.read_bytes()))

    def __call__(
        self, advertisement: Advertisement, params: RoundParams, now: datetime | None = None
    ) -> None:
        name = advertisement.node
        try:
            cert = x509.load_pem_x509_certificate(advertisement.certificate_pem)
            cert.verify_directly_issued_by(self.ca)
            identity = identity_from_cert(cert)
        except (ValueError, TypeError, InvalidSignature, MedfedError):
            raise SecAggError(
                f"the key advertisement of {name!r} carries no certificate of this consortium"
            ) from None
        moment = now or datetime.now(UTC)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise SecAggError(f"the certificate of {name!r} is not valid now")
        if identity.name != name:
            raise SecAggError(f"a certificate of {identity.name!r} was sent for {name!r}")
        if identity.role is not Role.NODE:
            raise SecAggError(
                f"the certificate sent for {name!r} is a {identity.role.value} certificate, "
                "not a node's"
            )
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise SecAggError(f"the certificate of {name!r} has no EC key")
        try:
            public.verify(advertisement.signature, advertisement.signed_bytes(params), ECDSA_SHA256)
        except InvalidSignature:
            raise SecAggError(
                f"the key advertisement of {name!r} is not signed by its certificate key: "
                "substituted or tampered with; the round is aborted"
            ) from None
