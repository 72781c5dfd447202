"""Verifying the ledger, whole or one batch at a time, with nothing but the CA certificate.

:class:`ChainVerifier` checks each entry in order: its height is the next one, it links to the
previous hash, its content matches its hash, the coordinator's certificate in force signed it, and
its payload is consistent (a member's certificate comes from this CA; every update recorded in a
round is signed by the node that sent it). The same class serves ``medfed audit verify`` on an
exported file and a node catching up from the head a task shows it, so both find the same faults.

A head shown by anyone (a task, a peer's gossip) is checked against what was verified: a different
hash at a height already verified, signed by the coordinator, is an equivocation — the coordinator
signed two histories — and the two signed heads are the proof (:class:`EquivocationError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from medfed.errors import EquivocationError, LedgerError
from medfed.governance.council import Proposal
from medfed.ledger import kinds
from medfed.ledger.approvals import check_approval
from medfed.ledger.entry import GENESIS_PREV, Entry, Head, signed_bytes
from medfed.ledger.governance import GovernanceFold
from medfed.ledger.keys import TrustedCertificate, trust, trust_signer
from medfed.ledger.updates import check_proof


@dataclass(frozen=True)
class Equivocation:
    """Two heads for one height, both signed by the coordinator: proof it showed two histories."""

    seq: int
    verified: Head
    shown: Head

    def describe(self) -> str:
        """The finding and its proof: both hashes with the coordinator's signature of each."""
        return (
            f"the coordinator signed two different ledger entries at height {self.seq}, so it is "
            f"showing different histories to different hospitals; proof: hash {self.verified.hash} "
            f"signature {self.verified.signature.hex()} (verified here) and hash "
            f"{self.shown.hash} signature {self.shown.signature.hex()} (shown elsewhere)"
        )


@dataclass
class ChainVerifier:
    ca: x509.Certificate
    check_updates: bool = True
    hashes: list[str] = field(default_factory=list)
    signatures: list[bytes] = field(default_factory=list)
    _signers: list[tuple[int, TrustedCertificate]] = field(default_factory=list)
    _members: dict[str, TrustedCertificate] = field(default_factory=dict)
    _last_time_ms: int = 0
    governance: GovernanceFold = field(default_factory=GovernanceFold)
    """The council, proposals, votes and the rules in force, as replayed so far."""

    @property
    def head(self) -> Head | None:
        if not self.hashes:
            return None
        return Head(len(self.hashes) - 1, self.hashes[-1], self.signatures[-1])

    @property
    def height(self) -> int:
        """How many entries are verified (the next expected ``seq``)."""
        return len(self.hashes)

    def extend(self, entries: Iterable[Entry]) -> Head | None:
        for entry in entries:
            self._check(entry)
        return self.head

    def check_head(self, shown: Head) -> None:
        """A head someone showed: consistent with the verified chain, or why it is not.

        Heads above the verified height are left for the caller to fetch up to."""
        if shown.seq >= self.height:
            return
        if self.hashes[shown.seq] == shown.hash:
            return
        if self._signed(shown):
            mine = Head(shown.seq, self.hashes[shown.seq], self.signatures[shown.seq])
            raise EquivocationError(Equivocation(shown.seq, mine, shown).describe())
        raise LedgerError(
            f"a ledger head at height {shown.seq} that differs from the verified chain and is "
            "not signed by the coordinator was shown (forged or corrupted)"
        )

    def _signed(self, head: Head) -> bool:
        signer = self._signer_at(head.seq)
        return signer is not None and signer.verify(
            head.signature, signed_bytes(head.seq, head.hash)
        )

    def _signer_at(self, seq: int) -> TrustedCertificate | None:
        found = None
        for start, signer in self._signers:
            if start <= seq:
                found = signer
        return found

    def _check(self, entry: Entry) -> None:
        where = f"ledger entry {entry.seq} ({entry.kind})"
        if entry.seq != self.height:
            raise LedgerError(
                f"{where} arrived where entry {self.height} was expected: an entry was dropped, "
                "duplicated or reordered"
            )
        prev = self.hashes[-1] if self.hashes else GENESIS_PREV
        if entry.prev != prev:
            raise LedgerError(
                f"{where} does not link to the entry before it: history was rewritten or forked"
            )
        if entry.computed_hash() != entry.hash:
            raise LedgerError(f"{where} was altered: its content does not match its hash")
        signer = self._signer_for(entry)
        if not signer.verify(entry.signature, signed_bytes(entry.seq, entry.hash)):
            raise LedgerError(f"{where} is not signed by the coordinator's certificate key")
        self._apply(entry)
        self.hashes.append(entry.hash)
        self.signatures.append(entry.signature)
        self._last_time_ms = max(self._last_time_ms, entry.time_ms)

    def _signer_for(self, entry: Entry) -> TrustedCertificate:
        if entry.seq == 0 and entry.kind != kinds.GENESIS:
            raise LedgerError(f"the ledger starts with {entry.kind}, not {kinds.GENESIS}")
        if entry.kind in (kinds.GENESIS, kinds.SIGNER):
            if entry.kind == kinds.GENESIS and entry.seq != 0:
                raise LedgerError(f"a second {kinds.GENESIS} at height {entry.seq}")
            signer = trust_signer(_text(entry, "certificate"), self.ca, entry.time_ms)
            self._signers.append((entry.seq, signer))
            return signer
        return self._signers[-1][1]

    def _apply(self, entry: Entry) -> None:
        if entry.kind == kinds.MEMBER_JOINED:
            member = trust(_text(entry, "certificate"), self.ca)
            if member.name != entry.payload.get("name"):
                raise LedgerError(
                    f"ledger entry {entry.seq} names a member its certificate does not"
                )
            self._members[member.name] = member
        elif entry.kind == kinds.GOVERNANCE_COUNCIL:
            self.governance.set_council(entry.payload)
        elif entry.kind in (kinds.GOVERNANCE_PROPOSED, kinds.GOVERNANCE_VOTED):
            event = self.governance.add(entry.payload, lambda name: self._member(entry, name))
            if isinstance(event, Proposal) and entry.payload.get("id") != event.id:
                raise LedgerError(f"ledger entry {entry.seq}: the proposal's id is not its own")
        elif entry.kind == kinds.PROTOCOL_APPROVED:
            node = self._member(entry, str(entry.payload.get("node")))
            try:
                signature = bytes.fromhex(str(entry.payload.get("signature")))
            except ValueError:
                raise LedgerError(
                    f"ledger entry {entry.seq}: approval signature is not hex"
                ) from None
            check_approval(str(entry.payload.get("spec_sha256")), signature, node)
        elif entry.kind == kinds.ROUND_COMMITTED and self.check_updates:
            round_ = entry.payload.get("round")
            for record in _records(entry, "updates"):
                node = self._member(entry, str(record.get("node")))
                check_proof(record, entry.study, int(round_ or 0), node)

    def _member(self, entry: Entry, name: str) -> TrustedCertificate:
        node = self._members.get(name)
        if node is None:
            raise LedgerError(
                f"ledger entry {entry.seq} ({entry.kind}) names {name!r}, who never joined"
            )
        return node


def verify_entries(entries: Iterable[Entry], ca: x509.Certificate) -> ChainVerifier:
    """Verify a whole ledger from its first entry; LedgerError names the first fault."""
    verifier = ChainVerifier(ca)
    verifier.extend(entries)
    return verifier


def _text(entry: Entry, key: str) -> str:
    value = entry.payload.get(key)
    if not isinstance(value, str):
        raise LedgerError(f"ledger entry {entry.seq} ({entry.kind}) has no {key}")
    return value


def _records(entry: Entry, key: str) -> list[dict[str, Any]]:
    value = entry.payload.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise LedgerError(
            f"ledger entry {entry.seq} ({entry.kind}): {key} is not a list of objects"
        )
    return value
