from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from medfed.errors import PkiError
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.revocation import CrlWatcher, RevocationList

from .conftest import NOW, read_cert


def _serial(ca: CertificateAuthority, name: str, out: Path) -> int:
    return read_cert(ca.issue(name, Role.NODE, out, now=NOW).cert).serial_number


def test_revoke_lists_the_serial_in_the_crl(ca: CertificateAuthority, tmp_path: Path) -> None:
    revoked = _serial(ca, "cleveland", tmp_path / "a")
    kept = _serial(ca, "mayo", tmp_path / "b")
    later = NOW + timedelta(hours=1)

    assert ca.revoke("cleveland", now=later) == 1

    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(revoked)
    assert entry is not None
    assert entry.revocation_date_utc == later
    assert crl.get_revoked_certificate_by_serial_number(kept) is None
    assert crl.next_update_utc == later + timedelta(days=7)
    revocations = RevocationList.load(ca.crl_path, ca.ca_cert_path)
    assert revocations.is_revoked(revoked)
    assert not revocations.is_revoked(kept)
    assert {r.name: r.revoked_at for r in ca.issued()} == {"cleveland": later, "mayo": None}


def test_revoke_covers_every_certificate_of_the_name(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    serials = {_serial(ca, "cleveland", tmp_path / str(i)) for i in range(2)}
    assert ca.revoke("cleveland", now=NOW) == 2
    assert RevocationList.load(ca.crl_path, ca.ca_cert_path).serials == serials
    with pytest.raises(PkiError, match="no unrevoked certificate"):
        ca.revoke("cleveland", now=NOW)


def test_revoke_of_an_unknown_name_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="ghost"):
        ca.revoke("ghost", now=NOW)


def test_crl_numbers_increase_and_staleness_follows_next_update(ca: CertificateAuthority) -> None:
    first = RevocationList.load(ca.crl_path, ca.ca_cert_path)
    ca.write_crl(now=NOW + timedelta(days=1))
    second = RevocationList.load(ca.crl_path, ca.ca_cert_path)
    assert first.number is not None and second.number is not None
    assert second.number > first.number
    assert second.next_update == NOW + timedelta(days=8)
    assert not second.is_stale(NOW + timedelta(days=7))
    assert second.is_stale(NOW + timedelta(days=8))


def test_crl_signed_by_another_ca_is_refused(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    with pytest.raises(PkiError, match="not signed by the CA"):
        RevocationList.load(other_ca.crl_path, ca.ca_cert_path)


@pytest.mark.parametrize(
    "content", [b"", b"-----BEGIN X509 CRL-----\nxx\n-----END X509 CRL-----\n"]
)
def test_unreadable_crl_is_refused(
    ca: CertificateAuthority, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "broken.pem"
    path.write_bytes(content)
    with pytest.raises(PkiError, match="not a PEM CRL"):
        RevocationList.load(path, ca.ca_cert_path)
    with pytest.raises(PkiError, match="cannot read"):
        RevocationList.load(tmp_path / "missing.pem", ca.ca_cert_path)


def test_empty_list_revokes_nothing() -> None:
    assert not RevocationList.empty().is_revoked(1)
    assert not RevocationList.empty().is_stale(NOW)


def test_watcher_picks_up_a_rewritten_crl(ca: CertificateAuthority, tmp_path: Path) -> None:
    serial = _serial(ca, "cleveland", tmp_path)
    watcher = CrlWatcher(ca.crl_path, ca.ca_cert_path)
    assert not watcher.is_revoked(serial)
    assert watcher.refresh() is False

    ca.revoke("cleveland", now=NOW)

    assert watcher.refresh() is True
    assert watcher.is_revoked(serial)
    assert watcher.refresh() is False


def test_watcher_keeps_the_last_good_crl(
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    serial = _serial(ca, "cleveland", tmp_path)
    ca.revoke("cleveland", now=NOW)
    watcher = CrlWatcher(ca.crl_path, ca.ca_cert_path)
    forged = other_ca.crl_path.read_bytes()

    with caplog.at_level(logging.ERROR, logger="medfed.pki.revocation"):
        ca.crl_path.write_bytes(forged)
        assert watcher.refresh() is False
        assert watcher.refresh() is False
        ca.crl_path.unlink()
        assert watcher.refresh() is False

    assert watcher.is_revoked(serial)
    assert len(caplog.records) == 2, "each broken state is logged once, not on every refresh"
    ca.write_crl(now=NOW)
    assert watcher.refresh() is True
    assert watcher.is_revoked(serial)


def test_watcher_refuses_to_start_without_its_crl(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="cannot read"):
        CrlWatcher(tmp_path / "missing.pem", ca.ca_cert_path)


def test_watcher_without_a_crl_checks_nothing(ca: CertificateAuthority) -> None:
    watcher = CrlWatcher(None, ca.ca_cert_path)
    assert watcher.refresh() is False
    assert not watcher.is_revoked(1)
    assert watcher.current == RevocationList.empty()


def test_watcher_is_safe_under_concurrent_refresh(ca: CertificateAuthority, tmp_path: Path) -> None:
    serial = _serial(ca, "cleveland", tmp_path)
    watcher = CrlWatcher(ca.crl_path, ca.ca_cert_path)
    ca.revoke("cleveland", now=NOW)
    loads: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        loads.append(watcher.refresh())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert loads.count(True) == 1
    assert watcher.is_revoked(serial)
