from __future__ import annotations

import ipaddress
import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from medfed.errors import PkiError
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.profiles import CLOCK_SKEW

from .conftest import CONSORTIUM, NOW, read_cert


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    return str(cert.subject.get_attributes_for_oid(oid)[0].value)


def test_init_writes_a_root_ca(ca: CertificateAuthority) -> None:
    ca_dir = ca.ca_cert_path.parent
    assert {p.name for p in ca_dir.iterdir()} == {"ca.crt", "ca.key", "index.json", "crl.pem"}
    assert _mode(ca_dir / "ca.key") == 0o600
    cert = read_cert(ca.ca_cert_path)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    assert _attribute(cert, NameOID.ORGANIZATION_NAME) == CONSORTIUM
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650) + CLOCK_SKEW
    cert.verify_directly_issued_by(cert)
    assert json.loads((ca_dir / "index.json").read_text())["certificates"] == []
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert len(crl) == 0
    assert crl.next_update_utc == NOW + timedelta(days=7)


def test_load_reopens_the_same_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    loaded = CertificateAuthority.load(ca.ca_cert_path.parent)
    assert loaded.consortium == CONSORTIUM
    assert loaded.ca_cert_path == ca.ca_cert_path
    files = loaded.issue("cleveland", Role.NODE, tmp_path / "out", now=NOW)
    read_cert(files.cert).verify_directly_issued_by(read_cert(ca.ca_cert_path))
    assert [r.name for r in ca.issued()] == ["cleveland"]


def test_init_refuses_to_overwrite_a_ca(ca: CertificateAuthority) -> None:
    ca_dir = ca.ca_cert_path.parent
    before = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(PkiError, match="refusing to overwrite"):
        CertificateAuthority.init(ca_dir, "another", now=NOW)
    assert (ca_dir / "ca.key").read_bytes() == before


def test_load_refuses_a_key_of_another_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    ca_dir = ca.ca_cert_path.parent
    (ca_dir / "ca.key").write_bytes((other_ca.ca_cert_path.parent / "ca.key").read_bytes())
    with pytest.raises(PkiError, match="not the key"):
        CertificateAuthority.load(ca_dir)


def test_load_of_a_missing_directory_is_a_pki_error(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="cannot read"):
        CertificateAuthority.load(tmp_path / "nowhere")


@pytest.mark.parametrize("consortium", ["", " ", "x" * 65])
def test_init_rejects_bad_consortium_names(tmp_path: Path, consortium: str) -> None:
    with pytest.raises(PkiError, match="consortium"):
        CertificateAuthority.init(tmp_path / "ca", consortium, now=NOW)


EXPECTED_EKU = {
    Role.NODE: [ExtendedKeyUsageOID.CLIENT_AUTH],
    Role.ADMIN: [ExtendedKeyUsageOID.CLIENT_AUTH],
    Role.COORDINATOR: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
}


@pytest.mark.parametrize("role", list(Role))
def test_issue_each_role(ca: CertificateAuthority, tmp_path: Path, role: Role) -> None:
    out = tmp_path / "out"
    files = ca.issue("cleveland", role, out, valid_days=30, now=NOW)

    assert files.cert == out / "cleveland.crt"
    assert files.key == out / "cleveland.key"
    assert _mode(files.key) == 0o600
    assert (out / "ca.crt").read_bytes() == ca.ca_cert_path.read_bytes()
    cert = read_cert(files.cert)
    cert.verify_directly_issued_by(read_cert(ca.ca_cert_path))
    assert _attribute(cert, NameOID.COMMON_NAME) == "cleveland"
    assert _attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == role.value
    assert _attribute(cert, NameOID.ORGANIZATION_NAME) == CONSORTIUM
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == EXPECTED_EKU[role]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert [(r.serial, r.name, r.role) for r in ca.issued()] == [
        (cert.serial_number, "cleveland", role)
    ]


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def test_coordinator_gets_loopback_sans_plus_extras(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    extras = ["coord.example.org", "IP:10.0.0.5", "DNS:Localhost", "::1"]
    files = ca.issue("coordinator", Role.COORDINATOR, tmp_path, sans=extras, now=NOW)
    assert _sans(read_cert(files.cert)) == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("coord.example.org"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]


def test_node_gets_only_the_sans_asked_for(ca: CertificateAuthority, tmp_path: Path) -> None:
    plain = read_cert(ca.issue("cleveland", Role.NODE, tmp_path / "a", now=NOW).cert)
    with pytest.raises(x509.ExtensionNotFound):
        plain.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    named = ca.issue("mayo", Role.NODE, tmp_path / "b", sans=["mayo.example"], now=NOW)
    assert _sans(read_cert(named.cert)) == [x509.DNSName("mayo.example")]


@pytest.mark.parametrize("san", ["IP:300.1.1.1", "bad_host", "*.example.org", "DNS:", "a..b"])
def test_issue_rejects_bad_sans(ca: CertificateAuthority, tmp_path: Path, san: str) -> None:
    with pytest.raises(PkiError, match="SAN"):
        ca.issue("coordinator", Role.COORDINATOR, tmp_path, sans=[san], now=NOW)
    assert not (tmp_path / "coordinator.key").exists()


@pytest.mark.parametrize("name", ["Cleveland", "ca", "../x"])
def test_issue_rejects_bad_names(ca: CertificateAuthority, tmp_path: Path, name: str) -> None:
    with pytest.raises(PkiError):
        ca.issue(name, Role.NODE, tmp_path, now=NOW)
    assert ca.issued() == []


def test_issue_refuses_to_overwrite_a_key(ca: CertificateAuthority, tmp_path: Path) -> None:
    key_path = ca.issue("cleveland", Role.NODE, tmp_path, now=NOW).key
    assert key_path is not None
    key = key_path.read_bytes()
    with pytest.raises(PkiError, match="already exists"):
        ca.issue("cleveland", Role.NODE, tmp_path, now=NOW)
    assert key_path.read_bytes() == key


def test_expired_certificate_via_explicit_window(ca: CertificateAuthority, tmp_path: Path) -> None:
    start, end = NOW - timedelta(days=10), NOW - timedelta(days=1)
    files = ca.issue("stale", Role.NODE, tmp_path, not_before=start, not_after=end, now=NOW)
    cert = read_cert(files.cert)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == end
    assert cert.not_valid_after_utc < NOW


def test_issue_refuses_a_certificate_outliving_the_ca(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    with pytest.raises(PkiError, match="outlive the CA"):
        ca.issue("cleveland", Role.NODE, tmp_path, valid_days=3651, now=NOW)


def test_issue_rejects_an_inverted_window(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="not after"):
        ca.issue("x", Role.NODE, tmp_path, not_before=NOW, not_after=NOW - timedelta(1), now=NOW)


def test_naive_time_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(PkiError, match="timezone"):
        ca.issue("cleveland", Role.NODE, tmp_path, now=naive)


def test_index_keeps_serials_exactly(ca: CertificateAuthority, tmp_path: Path) -> None:
    serials = {
        read_cert(ca.issue(name, Role.NODE, tmp_path / name, now=NOW).cert).serial_number
        for name in ("a", "b", "c")
    }
    assert {
        record.serial for record in CertificateAuthority.load(ca.ca_cert_path.parent).issued()
    } == serials
    index = json.loads((ca.ca_cert_path.parent / "index.json").read_text())
    assert all(isinstance(item["serial"], str) for item in index["certificates"])
    assert all(
        datetime.fromisoformat(item["not_after"]) == NOW + timedelta(days=825)
        for item in index["certificates"]
    )
