from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medfed.errors import IdentityError, PkiError
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import (
    Identity,
    Role,
    check_name,
    identity_from_cert,
    identity_from_pem,
)

from .conftest import NOW, read_cert


def _self_signed_pem(attributes: list[x509.NameAttribute[str]]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(attributes)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("role", list(Role))
def test_identity_from_pem_reads_each_role(
    ca: CertificateAuthority, tmp_path: Path, role: Role
) -> None:
    files = ca.issue("st-mary_s.2", role, tmp_path / "out", now=NOW)
    pem = files.cert.read_bytes()

    identity = identity_from_pem(pem)

    serial = read_cert(files.cert).serial_number
    assert identity == Identity(name="st-mary_s.2", role=role, serial=serial)
    assert identity_from_cert(read_cert(files.cert)) == identity


def test_certificate_without_ou_is_refused() -> None:
    pem = _self_signed_pem([x509.NameAttribute(NameOID.COMMON_NAME, "cleveland")])
    with pytest.raises(IdentityError, match="OU"):
        identity_from_pem(pem)


def test_certificate_with_unknown_role_is_refused() -> None:
    pem = _self_signed_pem(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cleveland"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "researcher"),
        ]
    )
    with pytest.raises(IdentityError, match="researcher"):
        identity_from_pem(pem)


def test_certificate_without_cn_is_refused() -> None:
    pem = _self_signed_pem([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node")])
    with pytest.raises(IdentityError, match="CN"):
        identity_from_pem(pem)


def test_certificate_with_invalid_cn_is_refused() -> None:
    pem = _self_signed_pem(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Cleveland Clinic"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"),
        ]
    )
    with pytest.raises(IdentityError, match="Cleveland Clinic"):
        identity_from_pem(pem)


def test_unreadable_pem_is_an_identity_error() -> None:
    with pytest.raises(IdentityError):
        identity_from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("name", ["a", "cleveland", "st-mary_s.1", "0" + "a" * 62])
def test_check_name_accepts_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Cleveland", "-x", ".x", "a" * 64, "a b", "x\n", "é", "ca", "a/b"]
)
def test_check_name_rejects_invalid_names(name: str) -> None:
    with pytest.raises(PkiError):
        check_name(name)
