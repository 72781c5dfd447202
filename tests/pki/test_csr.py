from __future__ import annotations

import base64
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medfed.errors import PkiError
from medfed.pki.ca import CertificateAuthority
from medfed.pki.csr import make_csr
from medfed.pki.identity import Role, identity_from_pem

from .conftest import CONSORTIUM, NOW


def _tamper(csr_pem: bytes, old: bytes, new: bytes) -> bytes:
    """Swap bytes inside the DER body, keeping the signature: the request no longer verifies."""
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    assert len(old) == len(new) and der.count(old) == 1
    body = base64.encodebytes(der.replace(old, new))
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


def test_csr_flow_keeps_the_key_local(ca: CertificateAuthority, tmp_path: Path) -> None:
    hospital = tmp_path / "hospital"
    key_path, csr_path = make_csr("cleveland", Role.NODE, hospital, consortium=CONSORTIUM)

    assert (key_path, csr_path) == (hospital / "cleveland.key", hospital / "cleveland.csr")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    pem = ca.sign_csr(csr_path.read_bytes(), now=NOW)

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_cert_path.read_bytes()))
    assert identity_from_pem(pem).role is Role.NODE
    assert [r.serial for r in ca.issued()] == [cert.serial_number]
    ca_files = b"".join(p.read_bytes() for p in ca.ca_cert_path.parent.iterdir())
    assert key_path.read_bytes() not in ca_files


def test_sign_role_override_and_sans_are_merged(ca: CertificateAuthority, tmp_path: Path) -> None:
    _, csr_path = make_csr("coordinator", Role.NODE, tmp_path, sans=["coord.example"])

    pem = ca.sign_csr(csr_path.read_bytes(), role=Role.COORDINATOR, sans=["10.1.2.3"], now=NOW)

    cert = x509.load_pem_x509_certificate(pem)
    assert identity_from_pem(pem).role is Role.COORDINATOR
    sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert sans == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("coord.example"),
        x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
    ]
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert org == CONSORTIUM


def test_tampered_csr_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    _, csr_path = make_csr("cleveland", Role.NODE, tmp_path)
    forged = _tamper(csr_path.read_bytes(), b"cleveland", b"clevelanx")
    with pytest.raises(PkiError, match="signature"):
        ca.sign_csr(forged, now=NOW)
    assert ca.issued() == []


def test_garbage_csr_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="certificate signing request"):
        ca.sign_csr(b"hello", now=NOW)


def test_csr_for_another_consortium_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    _, csr_path = make_csr("cleveland", Role.NODE, tmp_path, consortium="rival-net")
    with pytest.raises(PkiError, match="rival-net"):
        ca.sign_csr(csr_path.read_bytes(), now=NOW)


def _foreign_csr(
    key: ec.EllipticCurvePrivateKey, attributes: list[x509.NameAttribute[str]]
) -> bytes:
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_csr_with_a_non_p256_key_is_refused(ca: CertificateAuthority) -> None:
    pem = _foreign_csr(
        ec.generate_private_key(ec.SECP384R1()),
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cleveland"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"),
        ],
    )
    with pytest.raises(PkiError, match="P-256"):
        ca.sign_csr(pem, now=NOW)


def test_csr_without_role_needs_one_from_the_operator(ca: CertificateAuthority) -> None:
    pem = _foreign_csr(
        ec.generate_private_key(ec.SECP256R1()),
        [x509.NameAttribute(NameOID.COMMON_NAME, "cleveland")],
    )
    with pytest.raises(PkiError, match="role"):
        ca.sign_csr(pem, now=NOW)
    assert identity_from_pem(ca.sign_csr(pem, role=Role.ADMIN, now=NOW)).role is Role.ADMIN


def test_make_csr_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    key_path, _ = make_csr("cleveland", Role.NODE, tmp_path)
    before = key_path.read_bytes()
    with pytest.raises(PkiError, match="already exists"):
        make_csr("cleveland", Role.NODE, tmp_path)
    assert key_path.read_bytes() == before


def test_make_csr_rejects_bad_names(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="invalid identity name"):
        make_csr("Cleveland", Role.NODE, tmp_path)
    assert list(tmp_path.iterdir()) == []
