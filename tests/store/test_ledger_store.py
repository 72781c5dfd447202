"""The ledger inside the state store, on SQLite and PostgreSQL: entries from many threads get
consecutive heights, and two coordinators' handles on one database keep one chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from medfed.ledger.chain import verify_entries
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.signer import CertificateSigner
from medfed.store.ledger import LedgerWriter
from medfed.store.state import StateStore


def _writer(tmp_path: Path) -> tuple[LedgerWriter, CertificateAuthority]:
    ca = CertificateAuthority.init(tmp_path / "ca", "store-test")
    files = ca.issue("coordinator", Role.COORDINATOR, tmp_path / "c", sans=("localhost",))
    return LedgerWriter(
        CertificateSigner.from_files(files.cert, files.key), ca.ca_cert_path.read_bytes()
    ), ca


def test_concurrent_appends_get_consecutive_heights_and_one_chain(
    open_store: Callable[[], StateStore], tmp_path: Path
) -> None:
    writer, ca = _writer(tmp_path)
    first, second = open_store(), open_store()  # two handles, as two coordinator threads/pools
    first.open_ledger(writer, time.time())
    second.open_ledger(writer, time.time())  # the genesis is written once
    errors: list[BaseException] = []

    def append(store: StateStore, who: str) -> None:
        try:
            for i in range(15):
                store.append_ledger("study.cancelled", f"{who}-{i}", {"message": who}, time.time())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(s, f"t{n}"))
               for n, s in enumerate([first, second, first, second])]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    entries = first.ledger_entries(0, 1000)
    assert [e.seq for e in entries] == list(range(61))
    verify_entries(entries, ca.certificate)
    assert second.ledger_head() == entries[-1].head
