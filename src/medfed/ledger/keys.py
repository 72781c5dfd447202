"""Who signs the ledger, and how anyone holding only the consortium CA certificate checks it.

The first entry (``ledger.genesis``) carries the coordinator's certificate; a ``ledger.signer``
entry carries a renewed one. A verifier accepts a signer certificate only if the CA issued it
directly, to the coordinator role, and it was valid when the entry was written; every entry is then
checked against the signer in force. Signatures are ECDSA P-256 over SHA-256, the key of the
coordinator's mTLS certificate (no second key to manage or leak).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medfed.errors import LedgerError, MedfedError
from medfed.pki.identity import Role, identity_from_cert
from medfed.pki.signer import ECDSA_SHA256


@dataclass(frozen=True)
class TrustedCertificate:
    """A certificate the CA issued, with the identity and public key read from it."""

    name: str
    role: Role
    sha256: str
    public_key: ec.EllipticCurvePublicKey
    certificate: x509.Certificate

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.public_key.verify(signature, data, ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


def trust(pem: bytes | str, ca: x509.Certificate, at: datetime | None = None) -> TrustedCertificate:
    """Check that ``ca`` issued the certificate ``pem`` (valid at ``at`` when given)."""
    raw = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(raw)
        cert.verify_directly_issued_by(ca)
        identity = identity_from_cert(cert)
    except (ValueError, TypeError, InvalidSignature, MedfedError) as exc:
        raise LedgerError(f"a certificate in the ledger was not issued by this CA: {exc}") from None
    if at is not None and not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise LedgerError(
            f"the certificate of {identity.name!r} was not valid at {at:%Y-%m-%d %H:%M:%S} UTC"
        )
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise LedgerError(f"the certificate of {identity.name!r} has no EC key")
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return TrustedCertificate(identity.name, identity.role, digest, public, cert)


def trust_signer(pem: bytes | str, ca: x509.Certificate, time_ms: int) -> TrustedCertificate:
    signer = trust(pem, ca, datetime.fromtimestamp(time_ms / 1000, UTC))
    if signer.role is not Role.COORDINATOR:
        raise LedgerError(
            f"the ledger is signed by a {signer.role.value} certificate ({signer.name!r}); "
            "only the coordinator's may sign it"
        )
    return signer


def load_ca(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise LedgerError(f"cannot read the CA certificate {path}: {exc}") from None
