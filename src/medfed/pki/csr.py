"""Certificate signing requests: how a hospital gets a certificate without its key leaving it.

The hospital runs :func:`make_csr`, which generates the private key on its own machine and writes
a CSR (the public key plus the requested subject, signed by the private key as proof of
possession, RFC 2986). Only the CSR travels to the CA; the CA checks that self-signature before
signing anything (:func:`load_csr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from medfed.errors import PkiError
from medfed.pki.files import PRIVATE_MODE, private_key_pem, write_new
from medfed.pki.identity import Role, check_name, subject_name
from medfed.pki.profiles import generate_key, parse_sans


def make_csr(
    name: str,
    role: Role,
    out_dir: Path,
    *,
    consortium: str = "",
    sans: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``<name>.key`` (0600, generated here) and ``<name>.csr`` to ``out_dir``.

    Returns ``(key_path, csr_path)``. Refuses to replace an existing key: it may back a
    certificate that is still in use.
    """
    check_name(name)
    key_path, csr_path = out_dir / f"{name}.key", out_dir / f"{name}.csr"
    for path in (key_path, csr_path):
        if path.exists():
            raise PkiError(f"{path} already exists; remove it or choose another --out")
    key = generate_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject_name(name, role, consortium)
    )
    names = parse_sans(sans)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    write_new(key_path, private_key_pem(key), mode=PRIVATE_MODE)
    write_new(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its proof-of-possession signature."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise PkiError(f"not a readable PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise PkiError("CSR signature does not verify: the request was altered or is corrupt")
    return csr


def requested_role(csr: x509.CertificateSigningRequest) -> Role:
    """The role a CSR asks for in its OU, for when the CA operator does not name one."""
    values = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    roles = ", ".join(r.value for r in Role)
    if len(values) != 1:
        raise PkiError(f"CSR names no single role (OU); pass one of: {roles}")
    try:
        return Role(str(values[0].value))
    except ValueError:
        raise PkiError(f"CSR asks for role {values[0].value!r}; expected one of: {roles}") from None


def requested_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    """The CSR's subjectAltNames as ``DNS:``/``IP:`` strings; other kinds are refused."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    sans: list[str] = []
    for general_name in extension.value:
        if isinstance(general_name, x509.DNSName):
            sans.append(f"DNS:{general_name.value}")
        elif isinstance(general_name, x509.IPAddress):
            sans.append(f"IP:{general_name.value}")
        else:
            raise PkiError(f"CSR requests an unsupported subjectAltName {general_name}")
    return sans
