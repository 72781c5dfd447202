"""Signing with the key of one's own certificate: the one key a party holds and protects.

A node signs its secure-aggregation key advertisements, its updates and its protocol approvals,
an admin signs council votes, the coordinator signs the ledger, each with the ECDSA P-256 key its
mTLS identity rests on (no second key to issue, rotate or leak). Verifiers check the signature
against the certificate, which the consortium CA issued.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medfed.errors import PkiError

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True)
class CertificateSigner:
    key: ec.EllipticCurvePrivateKey
    certificate_pem: bytes

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path) -> CertificateSigner:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{key_path} is not an EC private key: it cannot sign")
        return cls(key, cert_path.read_bytes())

    @property
    def certificate_sha256(self) -> str:
        """SHA-256 of the certificate's DER encoding (its usual fingerprint)."""
        return certificate_sha256(self.certificate_pem)

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ECDSA_SHA256)

    def __call__(self, data: bytes) -> bytes:
        return self.sign(data)


def certificate_sha256(pem: bytes | str) -> str:
    raw = pem.encode("ascii") if isinstance(pem, str) else pem
    der = x509.load_pem_x509_certificate(raw).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()
