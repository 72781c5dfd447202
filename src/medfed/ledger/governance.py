"""Governance in the ledger: the council, and proposals and votes signed by council members.

The council (admin certificate identities and the threshold m) is the ledger's
``governance.council`` entry, written once from the coordinator's config when the consortium is
created. A proposal or a vote is a ``governance.proposed`` / ``governance.voted`` entry holding
the event's canonical JSON (:mod:`medfed.governance.council`) and its author's signature with
their admin certificate key; a proposal is signed without its id (``id`` 0: the ledger assigns
it). Anyone replaying the ledger — a node before it trains, ``medfed audit verify`` — checks each
signature against the author's certificate recorded in the ledger and folds the events into the
rules in force; the coordinator cannot invent a vote, and a node enforces the rules it derived
itself, not the coordinator's word.

One proposal kind has no council author: ``block_release``, which the coordinator opens in a
hospital's name when the hospital's privacy audit asks that a study's model not be released
(:mod:`medfed.governance.release`). It carries no signature (``""``): the coordinator's signature
on the ledger entry vouches for it, its proposer must be a hospital that joined the ledger, and it
can only withhold a model the coordinator holds anyway, never loosen a rule. Its votes are
ordinary council votes, signed as any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medfed.errors import GovernanceError, LedgerError
from medfed.governance.council import (
    Council,
    History,
    Outcome,
    Proposal,
    ProposalKind,
    ProposalState,
    Vote,
    cast_vote,
    event_from_json,
    fold_history,
    open_proposal,
    tally,
)
from medfed.governance.rules import DEFAULT, ConsortiumRules
from medfed.ledger.keys import TrustedCertificate
from medfed.pki.identity import Role

GOVERNANCE_PURPOSE = b"medfed/governance/v1\n"


def signed_event_bytes(event: Proposal | Vote) -> bytes:
    """What a council member signs: a vote as is, a proposal with id 0."""
    if isinstance(event, Proposal):
        event = dataclasses.replace(event, id=0)
    return GOVERNANCE_PURPOSE + event.to_json().encode("ascii")


def author(event: Proposal | Vote) -> str:
    return event.proposer if isinstance(event, Proposal) else event.voter


@dataclass
class GovernanceFold:
    """The governance state replayed so far from a ledger."""

    council: Council | None = None
    events: list[Proposal | Vote] = field(default_factory=list)
    history: History = field(default_factory=lambda: History(DEFAULT, {}))

    @property
    def rules(self) -> ConsortiumRules:
        return self.history.rules

    def set_council(self, payload: Mapping[str, Any]) -> None:
        if self.council is not None:
            raise LedgerError("the ledger records a second council: the council cannot change")
        try:
            members = frozenset(str(m) for m in payload["members"])
            self.council = Council(members, int(payload["threshold"]))
        except (KeyError, TypeError, ValueError, GovernanceError) as exc:
            raise LedgerError(f"the ledger's council entry is malformed: {exc}") from None

    def add(
        self, payload: Mapping[str, Any], member: Callable[[str], TrustedCertificate]
    ) -> Proposal | Vote:
        """Check one recorded event (its author signed it, with an admin certificate, as a
        council member) and fold it in; LedgerError if the ledger holds what a council could not."""
        if self.council is None:
            raise LedgerError("a governance event before the ledger names a council")
        try:
            event = event_from_json(str(payload["event"]))
            signature = bytes.fromhex(str(payload["signature"]))
        except (KeyError, ValueError, GovernanceError) as exc:
            raise LedgerError(f"a governance entry is malformed: {exc}") from None
        signer = member(author(event))
        if isinstance(event, Proposal) and event.kind is ProposalKind.BLOCK_RELEASE:
            if signer.name != author(event) or signer.role is not Role.NODE or signature:
                raise LedgerError(f"a block_release proposal names {author(event)!r}, which is "
                                  "not a hospital, or carries a signature")  # fmt: skip
        elif signer.name != author(event) or signer.role is not Role.ADMIN:
            raise LedgerError(f"a governance event by {author(event)!r} carries another signer")
        elif not signer.verify(signature, signed_event_bytes(event)):
            raise LedgerError(f"the {type(event).__name__.lower()} of {author(event)!r} is not "
                              "signed by their certificate key")  # fmt: skip
        try:
            self.history = fold_history(self.council, [*self.events, event])
        except GovernanceError as exc:
            raise LedgerError(
                f"the ledger holds a governance event no council allows: {exc}"
            ) from None
        self.events.append(event)
        return event

    def state(self, proposal_id: int) -> ProposalState:
        return self.history.proposals[proposal_id]

    def outcome(self, proposal_id: int) -> Outcome:
        assert self.council is not None
        return tally(self.council, self.history.proposals[proposal_id])

    def check_new(self, event: Proposal | Vote) -> None:
        """GovernanceError, with the council's reason, for an event that cannot be recorded."""
        if self.council is None:
            raise GovernanceError("this consortium has no council (coordinator config `council`)")
        if isinstance(event, Proposal):
            open_proposal(self.council, event)
            return
        if event.proposal_id not in self.history.proposals:
            raise GovernanceError(f"there is no proposal {event.proposal_id}")
        cast_vote(self.council, self.history.proposals[event.proposal_id], event)
