"""The ledger's rows: appended inside the caller's transaction, read back in order.

:class:`LedgerWriter` appends an entry in the same database session (and so the same
transaction) as the state change it records: a round is committed if and only if its entry is,
on SQLite and PostgreSQL alike. Heights are handed out under a row lock on ``ledger_head``, so
two threads committing at once get consecutive heights, never the same one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from medfed.errors import LedgerError, StoreError
from medfed.ledger import kinds
from medfed.ledger.entry import GENESIS_PREV, Entry, Head, make_entry
from medfed.pki.signer import CertificateSigner
from medfed.store.db import LedgerHeadRow, LedgerRow

MAX_PAGE = 1000
"""Most entries one read returns (a node catching up pages through the rest)."""


class LedgerWriter:
    """Signs and appends entries with the coordinator's certificate key."""

    def __init__(self, signer: CertificateSigner, ca_pem: bytes) -> None:
        self._signer = signer
        ca = x509.load_pem_x509_certificate(ca_pem)
        self._ca_sha256 = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()

    def open(self, session: Session, now: float) -> None:
        """Write the first entry of a new ledger, or a signer entry when the coordinator's
        certificate changed since the last entry."""
        head = session.get(LedgerHeadRow, 1, with_for_update=True)
        certificate = self._signer.certificate_pem.decode("ascii")
        if head is None:
            payload = {"certificate": certificate, "ca_sha256": self._ca_sha256}
            self._insert(session, None, kinds.GENESIS, "", payload, now)
        elif head.signer_sha256 != self._signer.certificate_sha256:
            self._insert(session, head, kinds.SIGNER, "", {"certificate": certificate}, now)

    def append(
        self, session: Session, kind: str, study: str, payload: Mapping[str, Any], now: float
    ) -> Entry:
        head = session.get(LedgerHeadRow, 1, with_for_update=True)
        if head is None:
            raise StoreError("the ledger was never opened (no genesis entry)")
        return self._insert(session, head, kind, study, payload, now)

    def _insert(
        self,
        session: Session,
        head: LedgerHeadRow | None,
        kind: str,
        study: str,
        payload: Mapping[str, Any],
        now: float,
    ) -> Entry:
        seq, prev = (head.seq + 1, head.hash) if head is not None else (0, GENESIS_PREV)
        entry = make_entry(seq, prev, kind, study, int(now * 1000), payload, self._signer)
        session.add(
            LedgerRow(
                seq=entry.seq, prev=entry.prev, kind=entry.kind, study=entry.study,
                time_ms=entry.time_ms, payload_json=json.dumps(entry.payload, sort_keys=True),
                hash=entry.hash, signature=entry.signature,
            )
        )  # fmt: skip
        signer = self._signer.certificate_sha256
        if head is None:
            session.add(LedgerHeadRow(id=1, seq=seq, hash=entry.hash, signer_sha256=signer))
        else:
            head.seq, head.hash, head.signer_sha256 = seq, entry.hash, signer
        session.flush()
        return entry


def read_head(session: Session) -> Head | None:
    row = session.get(LedgerHeadRow, 1)
    if row is None:
        return None
    entry = session.get(LedgerRow, row.seq)
    if entry is None:
        raise StoreError(f"the ledger head names entry {row.seq}, which is missing")
    return Head(entry.seq, entry.hash, entry.signature)


def read_entries(
    session: Session, start: int, limit: int = MAX_PAGE, study: str | None = None
) -> list[Entry]:
    """Entries from height ``start`` on, at most ``limit`` (and only one study's when given)."""
    stmt = select(LedgerRow).where(LedgerRow.seq >= start)
    if study is not None:
        stmt = stmt.where(LedgerRow.study == study)
    rows = session.scalars(stmt.order_by(LedgerRow.seq).limit(min(limit, MAX_PAGE))).all()
    return [entry_from_row(row) for row in rows]


def entry_from_row(row: LedgerRow) -> Entry:
    try:
        payload = json.loads(row.payload_json)
    except ValueError as exc:
        raise LedgerError(f"ledger entry {row.seq} holds unreadable JSON: {exc}") from None
    return Entry(row.seq, row.prev, row.kind, row.study, row.time_ms, payload, row.hash,
                 bytes(row.signature))  # fmt: skip
