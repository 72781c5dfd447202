from __future__ import annotations

import pytest

from medfed.errors import GovernanceError
from medfed.governance.council import (
    Council,
    Outcome,
    Proposal,
    ProposalKind,
    Vote,
    fold_history,
)
from medfed.governance.release import (
    AuditResult,
    BlockProposal,
    highest_auc,
    refusal,
    release_blocks,
)

COUNCIL = Council(frozenset({"ethics", "dpo", "researcher"}), 2)
ASKS = {"loss_auc": 0.71, "lira_auc": 0.64, "auc_threshold": 0.6, "block_release": 1.0}
FINE = {"loss_auc": 0.52, "auc_threshold": 0.0, "block_release": 0.0}


def _block(pid: int = 1) -> Proposal:
    return Proposal(pid, ProposalKind.BLOCK_RELEASE, "cleveland", study_id="s-0123")


def test_a_site_that_asks_holds_the_release_until_it_withdraws() -> None:
    first = AuditResult("a-1", {"cleveland": ASKS, "hungary": FINE})
    again = AuditResult("a-2", {"cleveland": FINE | {"auc_threshold": 0.9}, "hungary": FINE})

    held = release_blocks([first])
    withdrawn = release_blocks([first, again])

    assert [(b.site, b.status, b.holds) for b in held] == [("cleveland", "requested", True)]
    assert (held[0].attack, held[0].auc, held[0].threshold) == ("loss", 0.71, 0.6)
    assert [(b.site, b.status, b.holds) for b in withdrawn] == [("cleveland", "withdrawn", False)]


def test_the_council_decides_and_a_later_request_does_not_reopen_an_overruled_block() -> None:
    audits = [AuditResult("a-1", {"cleveland": ASKS}), AuditResult("a-2", {"cleveland": ASKS})]

    kept = release_blocks(audits, [BlockProposal(3, "cleveland", Outcome.PASSED)])
    overruled = release_blocks(audits, [BlockProposal(3, "cleveland", Outcome.REJECTED)])
    pending = release_blocks(audits, [BlockProposal(3, "cleveland", Outcome.OPEN)])

    assert (kept[0].status, kept[0].holds, kept[0].proposal) == ("kept", True, 3)
    assert (overruled[0].status, overruled[0].holds) == ("overruled", False)
    assert (pending[0].status, pending[0].holds, pending[0].audit_id) == ("requested", True, "a-2")


def test_the_refusal_names_the_site_the_auc_and_how_it_is_lifted() -> None:
    blocks = release_blocks([AuditResult("a-1", {"cleveland": ASKS})])
    decided = release_blocks(
        [AuditResult("a-1", {"cleveland": ASKS})], [BlockProposal(2, "cleveland", Outcome.OPEN)]
    )

    alone = refusal("s-0123", blocks, council=False)
    voted = refusal("s-0123", decided, council=True)

    assert alone is not None and "cleveland" in alone and "0.710" in alone
    assert "withdraws" in alone
    assert voted is not None and "proposal 2" in voted
    assert refusal("s-0123", release_blocks([AuditResult("a", {"x": FINE})]), False) is None


def test_highest_auc_picks_the_best_attack() -> None:
    assert highest_auc(ASKS) == ("loss", 0.71)
    assert highest_auc({"lira_auc": 0.8, "loss_auc": 0.6}) == ("lira", 0.8)


def test_a_block_proposal_is_the_sites_and_the_council_votes_on_it() -> None:
    proposal = _block()
    assert Proposal.from_json(proposal.to_json()) == proposal

    yes = fold_history(COUNCIL, [proposal, Vote(1, "ethics", True), Vote(1, "dpo", True)])
    no = fold_history(COUNCIL, [proposal, Vote(1, "ethics", False), Vote(1, "dpo", False)])

    assert yes.outcome(COUNCIL, 1) is Outcome.PASSED
    assert no.outcome(COUNCIL, 1) is Outcome.REJECTED
    assert yes.rules == no.rules  # a block changes no rule: the release check reads the outcome


@pytest.mark.parametrize(
    ("proposal", "message"),
    [
        (Proposal(1, ProposalKind.BLOCK_RELEASE, "cleveland"), "needs study_id"),
        (Proposal(1, ProposalKind.BLOCK_RELEASE, "cleveland", study_id="a b"), "not a study id"),
        (Proposal(1, ProposalKind.BLOCK_RELEASE, "Not A Name", study_id="s-1"), "not a certif"),
        (Proposal(1, ProposalKind.SET_MAX_EPSILON, "ethics", study_id="s-1"), "only its own"),
    ],
)
def test_malformed_block_proposals_are_refused(proposal: Proposal, message: str) -> None:
    with pytest.raises(GovernanceError, match=message):
        fold_history(COUNCIL, [proposal])
