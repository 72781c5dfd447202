from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.signer import CertificateSigner
from medfed.store.ledger import LedgerWriter
from medfed.store.state import StateStore

NODES = ("alpha", "beta", "gamma")
T0 = float(int(time.time()))  # certificates are issued now: entries are written while valid


@dataclass
class Party:
    name: str
    pem: bytes
    signer: CertificateSigner


@dataclass
class LedgerWorld:
    ca: x509.Certificate
    ca_pem: bytes
    coordinator: CertificateSigner
    nodes: dict[str, Party]
    store: StateStore

    def writer(self) -> LedgerWriter:
        return LedgerWriter(self.coordinator, self.ca_pem)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Path]:
    root = tmp_path_factory.mktemp("pki")
    return CertificateAuthority.init(root / "ca", "ledger-test"), root


@pytest.fixture
def world(authority: tuple[CertificateAuthority, Path], tmp_path: Path) -> LedgerWorld:
    ca, root = authority
    where = root / tmp_path.name
    since = datetime.fromtimestamp(T0, UTC) - timedelta(days=1)  # valid when the entries are dated
    coord = ca.issue("coordinator", Role.COORDINATOR, where, sans=("localhost",), not_before=since)
    nodes = {}
    for name in NODES:
        files = ca.issue(name, Role.NODE, where, not_before=since)
        signer = CertificateSigner.from_files(files.cert, files.key)
        nodes[name] = Party(name, files.cert.read_bytes(), signer)
    store = StateStore.sqlite(tmp_path / "state.sqlite")
    ca_pem = ca.ca_cert_path.read_bytes()
    signer = CertificateSigner.from_files(coord.cert, coord.key)
    store.open_ledger(LedgerWriter(signer, ca_pem), T0)
    return LedgerWorld(ca.certificate, ca_pem, signer, nodes, store)
