from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from medfed.pki.ca import CertificateAuthority

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CONSORTIUM = "acme-health"


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "ca", CONSORTIUM, now=NOW)


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "other-ca", CONSORTIUM, now=NOW)
