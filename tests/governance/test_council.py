import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfed.errors import GovernanceError
from medfed.governance.council import (
    Council,
    Outcome,
    Proposal,
    ProposalKind,
    Vote,
    apply,
    cast_vote,
    event_from_json,
    fold_history,
    open_proposal,
    rules_from_history,
    tally,
    validate_proposal,
)
from medfed.governance.rules import DEFAULT, PrivacyRequirement, StudyFacts, check_study

COUNCIL = Council(frozenset({"alice", "bob", "carol", "dave", "erin"}), threshold=3)
PLAN = "0f" * 32


def cap(epsilon=4.0, number=1, proposer="alice"):
    return Proposal(number, ProposalKind.SET_MAX_EPSILON, proposer, max_epsilon=epsilon)


def votes(number, *voters, approve=True):
    return [Vote(number, v, approve) for v in voters]


def test_m_minus_one_yes_votes_do_not_pass_and_the_mth_does():
    state = open_proposal(COUNCIL, cap())
    for vote in votes(1, "alice", "bob"):
        state = cast_vote(COUNCIL, state, vote)
    assert tally(COUNCIL, state) is Outcome.OPEN
    state = cast_vote(COUNCIL, state, Vote(1, "carol", True))
    assert tally(COUNCIL, state) is Outcome.PASSED


def test_rejected_once_passing_is_impossible():
    state = open_proposal(COUNCIL, cap())
    for vote in votes(1, "alice", "bob", approve=False):
        state = cast_vote(COUNCIL, state, vote)
    assert tally(COUNCIL, state) is Outcome.OPEN  # three left can still make 3
    state = cast_vote(COUNCIL, state, Vote(1, "carol", False))
    assert tally(COUNCIL, state) is Outcome.REJECTED
    with pytest.raises(GovernanceError, match="already rejected"):
        cast_vote(COUNCIL, state, Vote(1, "dave", True))


def test_a_non_council_admin_cannot_vote_or_propose():
    state = open_proposal(COUNCIL, cap())
    with pytest.raises(GovernanceError, match="'mallory' is not on the council and cannot vote"):
        cast_vote(COUNCIL, state, Vote(1, "mallory", True))
    with pytest.raises(GovernanceError, match="cannot propose"):
        validate_proposal(COUNCIL, cap(proposer="mallory"))


def test_a_member_votes_once_and_only_on_the_proposal_given():
    state = cast_vote(COUNCIL, open_proposal(COUNCIL, cap()), Vote(1, "bob", True))
    with pytest.raises(GovernanceError, match="already voted"):
        cast_vote(COUNCIL, state, Vote(1, "bob", False))
    with pytest.raises(GovernanceError, match="for proposal 2"):
        cast_vote(COUNCIL, state, Vote(2, "carol", True))


@given(
    n=st.integers(1, 7),
    data=st.data(),
)
def test_tally_is_m_of_n(n, data):
    members = [f"m{i}" for i in range(n)]
    m = data.draw(st.integers(1, n))
    council = Council(frozenset(members), m)
    ballots = data.draw(st.lists(st.booleans(), max_size=n))
    state = open_proposal(council, Proposal(0, ProposalKind.ADMIT_MEMBER, "m0", member="x"))
    for voter, approve in zip(members, ballots, strict=False):
        if tally(council, state) is not Outcome.OPEN:
            break
        state = cast_vote(council, state, Vote(0, voter, approve))
    yes, no = sum(state.votes.values()), len(state.votes) - sum(state.votes.values())
    outcome = tally(council, state)
    assert (outcome is Outcome.PASSED) == (yes >= m)
    assert (outcome is Outcome.REJECTED) == (yes < m and n - no < m)


@pytest.mark.parametrize(
    ("proposal", "message"),
    [
        (Proposal(1, ProposalKind.SUSPEND_MEMBER, "alice"), "needs member"),
        (Proposal(1, ProposalKind.SUSPEND_MEMBER, "alice", member="Bad Name"), "identity"),
        (Proposal(1, ProposalKind.BLACKLIST_PLAN, "alice", plan_sha256="abc"), "64"),
        (Proposal(1, ProposalKind.BLACKLIST_PLAN, "alice", member="h1"), "only its own"),
        (cap(epsilon=0.0), "> 0"),
        (cap(epsilon=float("nan")), "> 0"),
        (Proposal(1, ProposalKind.SET_MIN_PRIVACY, "alice"), "needs privacy"),
        (Proposal(-1, ProposalKind.ADMIT_MEMBER, "alice", member="h1"), "id"),
    ],
)
def test_malformed_proposals_are_refused(proposal, message):
    with pytest.raises(GovernanceError, match=message):
        validate_proposal(COUNCIL, proposal)


def test_a_council_needs_a_reachable_threshold():
    with pytest.raises(GovernanceError, match="threshold"):
        Council(frozenset({"a", "b"}), 3)
    with pytest.raises(GovernanceError, match="threshold"):
        Council(frozenset({"a"}), 0)


def every_kind():
    return [
        Proposal(1, ProposalKind.ADMIT_MEMBER, "alice", member="h1", reason="new hospital"),
        Proposal(2, ProposalKind.SUSPEND_MEMBER, "bob", member="h2"),
        Proposal(3, ProposalKind.REINSTATE_MEMBER, "bob", member="h2"),
        cap(0.1 + 0.2, number=4),
        Proposal(5, ProposalKind.SET_MAX_EPSILON, "alice"),  # lift the cap
        Proposal(
            6,
            ProposalKind.SET_MIN_PRIVACY,
            "carol",
            privacy=PrivacyRequirement(secure_aggregation=True, dp="any"),
        ),
        Proposal(7, ProposalKind.BLACKLIST_PLAN, "dave", plan_sha256=PLAN),
        Proposal(8, ProposalKind.UNBLACKLIST_PLAN, "dave", plan_sha256=PLAN),
    ]


@pytest.mark.parametrize("proposal", every_kind(), ids=lambda p: p.kind.value)
def test_canonical_json_round_trips_exactly(proposal):
    validate_proposal(COUNCIL, proposal)
    text = proposal.to_json()
    assert " " not in text.replace("new hospital", "")
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert event_from_json(text) == proposal
    assert event_from_json(text).to_json() == text


def test_epsilon_is_encoded_as_an_exact_decimal_string():
    doc = json.loads(cap(0.1 + 0.2).to_json())
    assert doc["max_epsilon"] == "0.30000000000000004"
    vote = Vote(4, "erin", False)
    assert vote.to_json() == '{"approve":false,"proposal":4,"type":"vote","voter":"erin"}'
    assert event_from_json(vote.to_json()) == vote


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"type":"ballot"}',
        '{"type":"vote","proposal":1,"voter":"a","approve":"yes"}',
        '{"type":"vote","proposal":true,"voter":"a","approve":true}',
        '{"type":"vote","proposal":"1","voter":"a","approve":true}',
        '{"type":"proposal","id":1.0,"kind":"admit_member","proposer":"a","member":"h"}',
        '{"type":"vote","proposal":1,"voter":"a","approve":true,"extra":1}',
        '{"type":"proposal","id":1,"kind":"crown_king","proposer":"a","reason":""}',
        '{"type":"proposal","id":1,"kind":"admit_member","proposer":"a","member":"h","x":1}',
    ],
)
def test_unreadable_entries_raise_governance_errors(text):
    with pytest.raises(GovernanceError):
        event_from_json(text)


def test_every_kind_applies():
    rules = DEFAULT
    for proposal in every_kind():
        rules = apply(rules, proposal)
        if proposal.id == 2:
            assert rules.suspended == {"h2"}
        if proposal.id == 4:
            assert rules.max_epsilon == 0.1 + 0.2
        if proposal.id == 7:
            assert rules.blacklisted_plans == {PLAN}
    assert rules.admitted == {"h1"}
    assert rules.suspended == frozenset()
    assert rules.max_epsilon is None
    assert rules.privacy == PrivacyRequirement(True, "any")
    assert rules.blacklisted_plans == frozenset()
    assert rules.set_by["max_epsilon"] == 5
    assert rules.set_by[f"plan:{PLAN}"] == 8


def test_rules_from_history_take_effect_on_the_passing_vote():
    history = [
        cap(4.0, number=1),
        *votes(1, "alice", "bob"),
        Proposal(2, ProposalKind.SUSPEND_MEMBER, "carol", member="h2"),
        *votes(2, "alice", "bob", "carol"),
    ]
    mid = rules_from_history(COUNCIL, history)
    assert mid.max_epsilon is None  # two of three
    assert mid.suspended == {"h2"}
    final = rules_from_history(COUNCIL, [*history, Vote(1, "erin", True)])
    assert final.max_epsilon == 4.0
    asked = StudyFacts(PLAN, 8.0, True, False, False, frozenset({"h1"}))
    (violation,) = check_study(final, asked)
    assert violation.message.endswith("(rule set by proposal 1)")
    folded = fold_history(COUNCIL, [*history, Vote(1, "erin", True)])
    assert folded.outcome(COUNCIL, 1) is Outcome.PASSED
    assert folded.outcome(COUNCIL, 2) is Outcome.PASSED


def test_a_rejected_proposal_changes_nothing():
    history = [cap(1.0), *votes(1, "alice", "bob", "carol", approve=False)]
    assert rules_from_history(COUNCIL, history) == DEFAULT


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([cap(), cap()], "recorded twice"),
        ([Vote(1, "alice", True)], "never made"),
        ([cap(), Vote(1, "mallory", True)], "not on the council"),
        ([cap(), Vote(1, "bob", True), Vote(1, "bob", True)], "already voted"),
    ],
)
def test_a_history_no_council_could_have_made_is_refused(events, message):
    with pytest.raises(GovernanceError, match=message):
        rules_from_history(COUNCIL, events)
