"""The coordinator's side of the ledger: who joined, who was revoked, the head every task
carries, the heads nodes gossip, and pages of entries for nodes and admins to verify.

Entries for rounds and study changes are written by the state store in the same transaction as the
change (:mod:`medfed.store.state`); this class adds what only the servicer sees: certificates
(first seen on a heartbeat or an admin call) and revocations (a revoked certificate that calls).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

from cryptography import x509

from medfed.coordinator.uploads import Attribute
from medfed.errors import LedgerError
from medfed.ledger.approvals import check_approval
from medfed.ledger.keys import TrustedCertificate
from medfed.ledger.updates import UpdateVerifier
from medfed.ledger.wire import to_proto
from medfed.pki.identity import Identity
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.ledger import MAX_PAGE
from medfed.store.state import StateStore

log = logging.getLogger("medfed.coordinator")

MAX_GOSSIP_HEADS = 64
"""Most peer heads one heartbeat reply carries (the newest ones)."""


class LedgerKeeper:
    def __init__(self, state: StateStore, ca: x509.Certificate) -> None:
        self._state = state
        self._verifier = UpdateVerifier(ca)
        self._lock = threading.Lock()
        self._members: set[bytes] = set()
        self._revoked: set[int] = set()
        self._heads: dict[str, pb.LedgerHead] = {}
        self._approved: set[tuple[str, str]] = set()

    def member(self, identity: Identity, pem: bytes) -> None:
        """Record a certificate the first time it calls (one database lookup per certificate per
        coordinator process, then a set lookup)."""
        with self._lock:
            if pem in self._members:
                return
        self._state.record_member(
            identity.name, identity.role.value, identity.serial, pem, time.time()
        )
        with self._lock:
            self._members.add(pem)

    def approvals(
        self, identity: Identity, pem: bytes, approvals: Sequence[pb.ProtocolApproval]
    ) -> None:
        """Record each protocol approval the node's steward signed, once; a bad signature is
        logged and dropped (the study keeps waiting for a valid one)."""
        for approval in approvals:
            key = (identity.name, approval.spec_sha256)
            with self._lock:
                if key in self._approved:
                    continue
            try:
                check_approval(approval.spec_sha256, bytes(approval.signature),
                               self._verifier.trusted(pem))  # fmt: skip
            except LedgerError as exc:
                log.warning("protocol approval from %s refused: %s", identity.name, exc)
                continue
            self._state.record_approval(
                identity.name, approval.spec_sha256, bytes(approval.signature), time.time()
            )
            with self._lock:
                self._approved.add(key)

    def revoked(self, identity: Identity) -> None:
        with self._lock:
            if identity.serial in self._revoked:
                return
            self._revoked.add(identity.serial)
        self._state.record_revocation(identity.name, identity.serial, time.time())

    def trusted(self, pem: bytes) -> TrustedCertificate:
        return self._verifier.trusted(pem)

    def attribute(self, pem: bytes, node: str) -> Attribute:
        """The check a reply of ``node`` (connected with ``pem``) must pass to be folded."""

        def check(header: pb.UpdateHeader, digest: str) -> Mapping[str, object]:
            return self._verifier.verify(pem, node, header, digest).to_json()

        return check

    def head(self) -> pb.LedgerHead | None:
        head = self._state.ledger_head()
        return None if head is None else to_proto(head)

    def gossip(self, node: str, verified: pb.LedgerHead | None) -> list[pb.PeerHead]:
        """Keep ``node``'s verified head; return the other nodes' (newest first)."""
        with self._lock:
            if verified is not None and verified.hash:
                self._heads[node] = verified
            others = [(n, h) for n, h in self._heads.items() if n != node]
        others.sort(key=lambda item: item[1].seq, reverse=True)
        return [pb.PeerHead(node=n, head=h) for n, h in others[:MAX_GOSSIP_HEADS]]

    def page(self, start: int, limit: int, study: str | None = None) -> pb.LedgerPage:
        entries = self._state.ledger_entries(start, min(limit or MAX_PAGE, MAX_PAGE), study)
        page = pb.LedgerPage(entries=[e.to_line() for e in entries])
        head = self.head()
        if head is not None:
            page.head.CopyFrom(head)
        return page
