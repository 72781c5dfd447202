"""The council: m of n admin certificates decide the consortium's rules by proposal and vote.

A council is fixed at consortium creation: a set of admin certificate identities and a threshold
m. Any member proposes; each member votes once, yes or no; a proposal passes on its m-th yes and
is rejected as soon as it cannot reach m any more (the members who have not voted are too few).
Proposals and votes are ledger entries: ``Proposal.to_json`` / ``Vote.to_json`` give their
canonical JSON (sorted keys, no whitespace, ε as a decimal string so no float formatting can make
two encoders disagree on the bytes that get hashed), and ``rules_from_history`` folds the entries,
in ledger order, into the rules in force. Everything here is a pure function over values.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from medfed.errors import GovernanceError
from medfed.governance.rules import (
    DEFAULT,
    DP_REQUIREMENTS,
    ConsortiumRules,
    DpRequirement,
    PrivacyRequirement,
)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_IDENTITY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
"""``medfed.pki.identity.NAME_PATTERN``, a certificate's CN (not imported: loads cryptography)."""


class ProposalKind(enum.Enum):
    ADMIT_MEMBER = "admit_member"
    SUSPEND_MEMBER = "suspend_member"
    REINSTATE_MEMBER = "reinstate_member"
    SET_MAX_EPSILON = "set_max_epsilon"
    SET_MIN_PRIVACY = "set_min_privacy"
    BLACKLIST_PLAN = "blacklist_plan"
    UNBLACKLIST_PLAN = "unblacklist_plan"
    BLOCK_RELEASE = "block_release"
    """A hospital's privacy audit asked that a study's model not be released
    (:mod:`medfed.governance.release`): opened by the coordinator in the site's name, never by a
    council member; passing keeps the block, rejecting releases the model."""


_MEMBER_KINDS = {
    ProposalKind.ADMIT_MEMBER,
    ProposalKind.SUSPEND_MEMBER,
    ProposalKind.REINSTATE_MEMBER,
}
_PLAN_KINDS = {ProposalKind.BLACKLIST_PLAN, ProposalKind.UNBLACKLIST_PLAN}
_STUDY_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class Outcome(enum.Enum):
    OPEN = "open"
    PASSED = "passed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Council:
    members: frozenset[str]
    threshold: int

    def __post_init__(self) -> None:
        if not self.members:
            raise GovernanceError("a council needs at least one member")
        if not 1 <= self.threshold <= len(self.members):
            raise GovernanceError(
                f"a council of {len(self.members)} needs a threshold in 1..{len(self.members)}, "
                f"not {self.threshold}"
            )
        for member in self.members:
            _check_identity(member, "council member")


@dataclass(frozen=True)
class Proposal:
    """One proposed change. Exactly the argument its kind needs is set: ``member`` (admit,
    suspend, reinstate), ``plan_sha256`` (blacklist, unblacklist), ``max_epsilon`` (None: lift
    the cap), ``privacy`` or ``study_id`` (block release; ``proposer`` is then the hospital that
    asked). ``id`` is assigned by whoever records it (the ledger)."""

    id: int
    kind: ProposalKind
    proposer: str
    member: str = ""
    plan_sha256: str = ""
    max_epsilon: float | None = None
    privacy: PrivacyRequirement | None = None
    reason: str = ""
    study_id: str = ""

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "type": "proposal",
            "id": self.id,
            "kind": self.kind.value,
            "proposer": self.proposer,
            "reason": self.reason,
        }
        if self.kind in _MEMBER_KINDS:
            doc["member"] = self.member
        elif self.kind in _PLAN_KINDS:
            doc["plan_sha256"] = self.plan_sha256
        elif self.kind is ProposalKind.BLOCK_RELEASE:
            doc["study_id"] = self.study_id
        elif self.kind is ProposalKind.SET_MAX_EPSILON:
            doc["max_epsilon"] = None if self.max_epsilon is None else repr(float(self.max_epsilon))
        else:
            privacy = self.privacy or PrivacyRequirement()
            doc["privacy"] = {"secure_aggregation": privacy.secure_aggregation, "dp": privacy.dp}
        return _canonical(doc)

    @classmethod
    def from_json(cls, text: str) -> Proposal:
        try:
            doc = json.loads(text)
            if doc.pop("type") != "proposal":
                raise GovernanceError("not a proposal")
            kind = ProposalKind(doc.pop("kind"))
            privacy = doc.pop("privacy", None)
            epsilon = doc.pop("max_epsilon", None)
            proposal = cls(
                id=_integer(doc.pop("id")),
                kind=kind,
                proposer=str(doc.pop("proposer")),
                member=str(doc.pop("member", "")),
                plan_sha256=str(doc.pop("plan_sha256", "")),
                max_epsilon=None if epsilon is None else float(epsilon),
                privacy=None if privacy is None else _privacy_from(privacy),
                reason=str(doc.pop("reason", "")),
                study_id=str(doc.pop("study_id", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GovernanceError(f"unreadable proposal: {exc}") from exc
        if doc:
            raise GovernanceError(f"unreadable proposal: unknown keys {sorted(doc)}")
        return proposal


@dataclass(frozen=True)
class Vote:
    proposal_id: int
    voter: str
    approve: bool

    def to_json(self) -> str:
        return _canonical(
            {
                "type": "vote",
                "proposal": self.proposal_id,
                "voter": self.voter,
                "approve": self.approve,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Vote:
        try:
            doc = json.loads(text)
            if doc.get("type") != "vote" or set(doc) != {"type", "proposal", "voter", "approve"}:
                raise GovernanceError("not a vote")
            if not isinstance(doc["approve"], bool):
                raise GovernanceError("approve must be true or false")
            return cls(_integer(doc["proposal"]), str(doc["voter"]), doc["approve"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise GovernanceError(f"unreadable vote: {exc}") from exc


@dataclass(frozen=True)
class ProposalState:
    """A proposal and the votes cast on it so far (voter -> yes/no)."""

    proposal: Proposal
    votes: Mapping[str, bool]

    @property
    def yes(self) -> int:
        return sum(self.votes.values())


def open_proposal(council: Council, proposal: Proposal) -> ProposalState:
    """A validated proposal with no votes yet."""
    validate_proposal(council, proposal)
    return ProposalState(proposal, MappingProxyType({}))


def validate_proposal(council: Council, proposal: Proposal) -> None:
    """Raise GovernanceError unless a council member proposes exactly one well-formed change."""
    if proposal.kind is ProposalKind.BLOCK_RELEASE:
        _check_identity(proposal.proposer, "the hospital asking to block release")
    elif proposal.proposer not in council.members:
        raise GovernanceError(
            f"{proposal.proposer!r} is not on the council and cannot propose "
            f"(council: {', '.join(sorted(council.members))})"
        )
    if proposal.id < 0:
        raise GovernanceError(f"proposal id must be >= 0, not {proposal.id}")
    kind = proposal.kind
    if len(proposal.reason) > 1000:
        raise GovernanceError("a proposal's reason is at most 1000 characters")
    _only(proposal, "member" if kind in _MEMBER_KINDS else None, proposal.member != "")
    _only(proposal, "plan_sha256" if kind in _PLAN_KINDS else None, proposal.plan_sha256 != "")
    _only(proposal, "max_epsilon" if kind is ProposalKind.SET_MAX_EPSILON else None,
          proposal.max_epsilon is not None, required=False)  # fmt: skip
    _only(proposal, "privacy" if kind is ProposalKind.SET_MIN_PRIVACY else None,
          proposal.privacy is not None)  # fmt: skip
    _only(proposal, "study_id" if kind is ProposalKind.BLOCK_RELEASE else None,
          proposal.study_id != "")  # fmt: skip
    if kind is ProposalKind.BLOCK_RELEASE and not _STUDY_ID.fullmatch(proposal.study_id):
        raise GovernanceError(f"study_id {proposal.study_id[:40]!r} is not a study id")
    if kind in _MEMBER_KINDS:
        _check_identity(proposal.member, "member")
    if kind in _PLAN_KINDS and not _SHA256.fullmatch(proposal.plan_sha256):
        raise GovernanceError("plan_sha256 must be 64 lower-case hex digits")
    epsilon = proposal.max_epsilon
    if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
        raise GovernanceError(f"max_epsilon must be a finite number > 0, not {epsilon}")
    if proposal.privacy is not None and proposal.privacy.dp not in DP_REQUIREMENTS:
        raise GovernanceError(f"dp requirement must be one of {DP_REQUIREMENTS}")


def cast_vote(council: Council, state: ProposalState, vote: Vote) -> ProposalState:
    """The state with ``vote`` counted; refuses non-members, second votes, votes on another
    proposal and votes on a decided proposal, each with its reason."""
    number = state.proposal.id
    if vote.proposal_id != number:
        raise GovernanceError(f"the vote is for proposal {vote.proposal_id}, not {number}")
    if vote.voter not in council.members:
        raise GovernanceError(
            f"{vote.voter!r} is not on the council and cannot vote on proposal {number}"
        )
    if vote.voter in state.votes:
        raise GovernanceError(f"{vote.voter!r} has already voted on proposal {number}")
    outcome = tally(council, state)
    if outcome is not Outcome.OPEN:
        raise GovernanceError(f"proposal {number} is already {outcome.value}")
    return replace(state, votes=MappingProxyType({**state.votes, vote.voter: vote.approve}))


def tally(council: Council, state: ProposalState) -> Outcome:
    """PASSED at m yes votes; REJECTED once the members yet to vote cannot make up m."""
    yes = state.yes
    if yes >= council.threshold:
        return Outcome.PASSED
    not_voted = len(council.members) - len(state.votes)
    if yes + not_voted < council.threshold:
        return Outcome.REJECTED
    return Outcome.OPEN


def apply(rules: ConsortiumRules, proposal: Proposal) -> ConsortiumRules:
    """The rules after ``proposal`` passed; the rule it sets cites it (``set_by``)."""
    kind, member, plan = proposal.kind, proposal.member, proposal.plan_sha256
    if kind is ProposalKind.BLOCK_RELEASE:  # no rule: the release check reads the outcome
        return rules
    if kind is ProposalKind.ADMIT_MEMBER:
        new = replace(rules, admitted=rules.admitted | {member})
    elif kind is ProposalKind.SUSPEND_MEMBER:
        new = replace(rules, suspended=rules.suspended | {member})
    elif kind is ProposalKind.REINSTATE_MEMBER:
        new = replace(rules, suspended=rules.suspended - {member})
    elif kind is ProposalKind.SET_MAX_EPSILON:
        new = replace(rules, max_epsilon=proposal.max_epsilon)
    elif kind is ProposalKind.SET_MIN_PRIVACY:
        new = replace(rules, privacy=proposal.privacy or PrivacyRequirement())
    elif kind is ProposalKind.BLACKLIST_PLAN:
        new = replace(rules, blacklisted_plans=rules.blacklisted_plans | {plan})
    else:
        new = replace(rules, blacklisted_plans=rules.blacklisted_plans - {plan})
    key = {
        ProposalKind.SET_MAX_EPSILON: "max_epsilon",
        ProposalKind.SET_MIN_PRIVACY: "privacy",
    }.get(kind, f"member:{member}" if kind in _MEMBER_KINDS else f"plan:{plan}")
    return replace(new, set_by=MappingProxyType({**rules.set_by, key: proposal.id}))


@dataclass(frozen=True)
class History:
    """The fold of a ledger's governance entries: the rules in force and every proposal's state."""

    rules: ConsortiumRules
    proposals: Mapping[int, ProposalState]

    def outcome(self, council: Council, proposal_id: int) -> Outcome:
        return tally(council, self.proposals[proposal_id])


def fold_history(
    council: Council,
    events: Iterable[Proposal | Vote],
    initial: ConsortiumRules = DEFAULT,
) -> History:
    """Replay proposals and votes in ledger order; a proposal takes effect on the vote that
    passes it. An event the council would have refused (a duplicate id, a vote by a non-member
    or on an unknown proposal) means the ledger is not a council's history: GovernanceError."""
    rules = initial
    states: dict[int, ProposalState] = {}
    for event in events:
        if isinstance(event, Proposal):
            if event.id in states:
                raise GovernanceError(f"proposal {event.id} is recorded twice")
            states[event.id] = open_proposal(council, event)
            continue
        if event.proposal_id not in states:
            raise GovernanceError(f"a vote on proposal {event.proposal_id}, which was never made")
        state = cast_vote(council, states[event.proposal_id], event)
        states[event.proposal_id] = state
        if tally(council, state) is Outcome.PASSED:
            rules = apply(rules, state.proposal)
    return History(rules, MappingProxyType(states))


def rules_from_history(
    council: Council,
    events: Iterable[Proposal | Vote],
    initial: ConsortiumRules = DEFAULT,
) -> ConsortiumRules:
    """The rules in force after replaying ``events`` (see ``fold_history``)."""
    return fold_history(council, events, initial).rules


def event_from_json(text: str) -> Proposal | Vote:
    """A governance ledger payload back as the value it encodes."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError) as exc:
        raise GovernanceError(f"unreadable governance entry: {exc}") from exc
    if kind == "proposal":
        return Proposal.from_json(text)
    if kind == "vote":
        return Vote.from_json(text)
    raise GovernanceError(f"unknown governance entry type {kind!r}")


def _integer(value: Any) -> int:
    """A JSON integer, exactly (not a float, a string or a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GovernanceError(f"expected an integer, got {value!r}")
    return value


def _canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _privacy_from(doc: Mapping[str, Any]) -> PrivacyRequirement:
    dp = str(doc["dp"])
    if dp not in DP_REQUIREMENTS or not isinstance(doc["secure_aggregation"], bool):
        raise GovernanceError(f"privacy requirement {dict(doc)} is invalid")
    return PrivacyRequirement(doc["secure_aggregation"], _dp(dp))


def _dp(value: str) -> DpRequirement:
    for known in DP_REQUIREMENTS:
        if value == known:
            return known
    raise GovernanceError(f"dp requirement must be one of {DP_REQUIREMENTS}, not {value!r}")


def _only(proposal: Proposal, needed: str | None, is_set: bool, required: bool = True) -> None:
    """The argument ``needed`` names is the one this proposal's kind takes."""
    name = proposal.kind.value
    if needed is None and is_set:
        raise GovernanceError(f"a {name} proposal takes only its own argument")
    if needed is not None and required and not is_set:
        raise GovernanceError(f"a {name} proposal needs {needed}")


def _check_identity(identity: str, what: str) -> None:
    if not _IDENTITY.fullmatch(identity):
        raise GovernanceError(f"{what} {identity!r} is not a certificate identity")
