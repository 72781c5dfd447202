"""The ledger's part of the coordinator's state: entries that record nothing else (members,
revocations, protocol approvals, votes) and reading the chain back. Mixed into
:class:`medfed.store.state.StateStore`, whose other writes append their entries themselves."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medfed.errors import StoreError
from medfed.ledger import kinds
from medfed.ledger.entry import Entry, Head
from medfed.pki.signer import certificate_sha256
from medfed.store.db import LedgerRow, ProtocolApprovalRow
from medfed.store.ledger import LedgerWriter, entry_from_row, read_entries, read_head
from medfed.store.ledger_payloads import member_known, remember_member


class LedgerState:
    _ledger: LedgerWriter | None

    def _reading(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def open_ledger(self, writer: LedgerWriter, now: float) -> None:
        """From now on every consequential change is also a signed ledger entry written in its
        own transaction (:mod:`medfed.store.ledger`)."""
        with self._writing() as session:
            writer.open(session, now)
        self._ledger = writer

    def _record(
        self, session: Session, kind: str, study: str, payload: Mapping[str, Any], now: float
    ) -> Entry | None:
        if self._ledger is None:
            return None
        return self._ledger.append(session, kind, study, payload, now)

    # -- ledger -----------------------------------------------------------------------------------

    def record_member(self, name: str, role: str, serial: int, pem: bytes, now: float) -> bool:
        """Record a member's certificate the first time it is seen; True if this call did."""
        if self._ledger is None:
            return False
        with self._writing() as session:
            if member_known(session, pem):
                return False
            payload = {
                "name": name,
                "role": role,
                "serial": f"{serial:x}",
                "certificate": pem.decode("ascii"),
                "sha256": certificate_sha256(pem),
            }
            entry = self._record(session, kinds.MEMBER_JOINED, "", payload, now)
            if entry is not None:
                remember_member(session, pem, name, entry.seq)
            return True

    def record_revocation(self, name: str, serial: int, now: float) -> None:
        payload = {"name": name, "serial": f"{serial:x}"}
        with self._writing() as session:
            self._record(session, kinds.MEMBER_REVOKED, "", payload, now)

    def append_ledger(self, kind: str, study: str, payload: Mapping[str, Any], now: float) -> Entry:
        """An entry that records nothing else in the state (an approval, a vote)."""
        if self._ledger is None:
            raise StoreError("this coordinator keeps no ledger")
        with self._writing() as session:
            return self._ledger.append(session, kind, study, payload, now)

    def ledger_head(self) -> Head | None:
        with self._reading() as session:
            return read_head(session)

    def ledger_entries(self, start: int, limit: int, study: str | None = None) -> list[Entry]:
        with self._reading() as session:
            return read_entries(session, start, limit, study)

    def ledger_entries_of(self, wanted: tuple[str, ...]) -> list[Entry]:
        """Every entry of these kinds, in order (governance replays its history from them)."""
        stmt = select(LedgerRow).where(LedgerRow.kind.in_(wanted)).order_by(LedgerRow.seq)
        with self._reading() as session:
            return [entry_from_row(row) for row in session.scalars(stmt)]

    def append_once(self, kind: str, study: str, payload: Mapping[str, Any], now: float) -> bool:
        """Append unless the study already has an entry of this kind (a coordinator restarted
        between writing it and the step after finds it there); True if this call wrote it."""
        if self._ledger is None:
            return False
        done = select(LedgerRow.seq).where(LedgerRow.study == study, LedgerRow.kind == kind)
        with self._writing() as session:
            if session.scalars(done.limit(1)).first() is not None:
                return False
            self._record(session, kind, study, payload, now)
            return True

    def record_approval(self, node: str, spec_sha256: str, signature: bytes, now: float) -> bool:
        """Record a hospital's signed approval of a protocol once; True if this call did."""
        with self._writing() as session:
            if session.get(ProtocolApprovalRow, (spec_sha256, node)) is not None:
                return False
            payload = {"node": node, "spec_sha256": spec_sha256, "signature": signature.hex()}
            entry = self._record(session, kinds.PROTOCOL_APPROVED, "", payload, now)
            seq = entry.seq if entry is not None else -1
            session.add(ProtocolApprovalRow(spec_sha256=spec_sha256, node=node, seq=seq))
            return True

    def approvals(self, spec_sha256: str) -> set[str]:
        """The hospitals that approved the protocol with this hash."""
        stmt = select(ProtocolApprovalRow.node).where(
            ProtocolApprovalRow.spec_sha256 == spec_sha256
        )
        with self._reading() as session:
            return set(session.scalars(stmt))
