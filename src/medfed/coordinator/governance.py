"""The coordinator's side of governance: record signed proposals and votes, know the rules in force.

The fold is replayed from the ledger at start (the ledger is the only record) and advanced with
each event this coordinator appends, under one lock, so two votes arriving together are counted
one after the other against the same state. Rules are enforced here at submission and selection,
and again by every node from its own replay of the ledger (:mod:`medfed.node.ledger`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

from medfed.coordinator.spec import StudySpec
from medfed.errors import GovernanceError, LedgerError
from medfed.governance.council import (
    Council,
    Proposal,
    ProposalKind,
    event_from_json,
    fold_history,
)
from medfed.governance.release import BlockProposal
from medfed.governance.rules import ConsortiumRules, check_study, facts_from_spec
from medfed.ledger import kinds
from medfed.ledger.governance import GovernanceFold, author, signed_event_bytes
from medfed.ledger.keys import TrustedCertificate
from medfed.pki.identity import Identity, Role
from medfed.store.state import StateStore


class GovernanceKeeper:
    def __init__(self, state: StateStore, council: Council | None, now: float) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._fold = GovernanceFold()
        self._replay(council, now)

    @property
    def rules(self) -> ConsortiumRules:
        with self._lock:
            return self._fold.rules

    def check_spec(self, spec: StudySpec) -> None:
        """GovernanceError naming every rule the study breaks (empty: it may be submitted)."""
        broken = check_study(self.rules, facts_from_spec(spec))
        if broken:
            raise GovernanceError("; ".join(v.message for v in broken))

    def submit(
        self, caller: Identity, trusted: TrustedCertificate, event_json: bytes, signature: bytes
    ) -> tuple[str, int]:
        """Record a council member's signed proposal or vote; (what happened, proposal id)."""
        if caller.role is not Role.ADMIN:
            raise GovernanceError("only admin certificates take part in governance")
        try:
            event = event_from_json(event_json.decode("utf-8"))
        except UnicodeDecodeError:
            raise GovernanceError("a governance event must be UTF-8 JSON") from None
        if author(event) != caller.name:
            raise GovernanceError(f"{caller.name!r} cannot sign for {author(event)!r}")
        if isinstance(event, Proposal) and event.kind is ProposalKind.BLOCK_RELEASE:
            raise GovernanceError(
                "a block_release proposal is opened by the coordinator when a hospital's privacy "
                "audit asks for it, not by an admin"
            )
        if not trusted.verify(signature, signed_event_bytes(event)):
            raise GovernanceError("the event is not signed by the caller's certificate key")
        with self._lock:
            if isinstance(event, Proposal):
                event = dataclasses.replace(event, id=len(self._fold.history.proposals) + 1)
            self._fold.check_new(event)
            payload: dict[str, Any] = {"event": event.to_json(), "signature": signature.hex()}
            kind = kinds.GOVERNANCE_VOTED
            if isinstance(event, Proposal):
                payload["id"] = event.id
                kind = kinds.GOVERNANCE_PROPOSED
            self._state.append_ledger(kind, "", payload, time.time())
            self._fold.add(payload, lambda _name: trusted)
            number = event.id if isinstance(event, Proposal) else event.proposal_id
            outcome = self._fold.outcome(number).value
        what = "proposal" if isinstance(event, Proposal) else f"vote on proposal {number}"
        return f"{what} recorded; proposal {number} is {outcome}", number

    @property
    def has_council(self) -> bool:
        with self._lock:
            return self._fold.council is not None

    def open_release_block(self, site: str, study_id: str, reason: str, now: float) -> int | None:
        """Open the council's proposal to block ``study_id``'s release in ``site``'s name (its
        audit reply asked, over its own mTLS connection); None without a council. Unsigned: the
        ledger entry's coordinator signature vouches for it (:mod:`medfed.ledger.governance`)."""
        with self._lock:
            council = self._fold.council
            if council is None:
                return None
            number = len(self._fold.history.proposals) + 1
            proposal = Proposal(number, ProposalKind.BLOCK_RELEASE, site, reason=reason[:1000],
                                study_id=study_id)  # fmt: skip
            history = fold_history(council, [*self._fold.events, proposal])
            payload = {"event": proposal.to_json(), "signature": "", "id": number}
            self._state.append_ledger(kinds.GOVERNANCE_PROPOSED, study_id, payload, now)
            self._fold.events.append(proposal)
            self._fold.history = history
        return number

    def release_proposals(self, study_id: str) -> list[BlockProposal]:
        """The council's block_release proposals for ``study_id`` and where each stands."""
        with self._lock:
            return [
                BlockProposal(n, s.proposal.proposer, self._fold.outcome(n))
                for n, s in sorted(self._fold.history.proposals.items())
                if s.proposal.kind is ProposalKind.BLOCK_RELEASE and s.proposal.study_id == study_id
            ]

    def state_json(self) -> str:
        """The council, the rules in force and every proposal with its votes and outcome."""
        with self._lock:
            council, history = self._fold.council, self._fold.history
            proposals = [
                {**json.loads(s.proposal.to_json()), "votes": dict(s.votes),
                 "outcome": self._fold.outcome(n).value}
                for n, s in sorted(history.proposals.items())
            ]  # fmt: skip
        rules = history.rules
        return json.dumps(
            {
                "council": None
                if council is None
                else {"members": sorted(council.members), "threshold": council.threshold},
                "rules": {
                    "max_epsilon": rules.max_epsilon,
                    "privacy": rules.privacy.describe(),
                    "blacklisted_plans": sorted(rules.blacklisted_plans),
                    "suspended": sorted(rules.suspended),
                    "set_by": dict(rules.set_by),
                },
                "proposals": proposals,
            }
        )

    def _replay(self, council: Council | None, now: float) -> None:
        """Fold the ledger's governance entries; record the configured council if it has none."""
        recorded = None
        for entry in self._state.ledger_entries_of((kinds.GOVERNANCE_COUNCIL,)):
            recorded = entry.payload
            self._fold.set_council(entry.payload)
        if council is not None:
            wanted = {"members": sorted(council.members), "threshold": council.threshold}
            if recorded is None:
                self._state.append_ledger(kinds.GOVERNANCE_COUNCIL, "", wanted, now)
                self._fold.set_council(wanted)
            elif dict(recorded) != wanted:
                raise LedgerError(
                    f"the ledger's council is {recorded}; the config asks for {wanted}: a council "
                    "is fixed when the consortium is created"
                )
        events = self._state.ledger_entries_of((kinds.GOVERNANCE_PROPOSED, kinds.GOVERNANCE_VOTED))
        for entry in events:  # signatures were checked when they were recorded
            event = event_from_json(str(entry.payload["event"]))
            self._fold.events.append(event)
        if self._fold.council is not None and self._fold.events:
            self._fold.history = fold_history(self._fold.council, self._fold.events)
