"""What a finished study records of each hospital: participation, replies accepted and rejected
(with reason codes), its contribution estimate, reputation and reward points.

The estimate this coordinator records is the one it can defend from what it holds without any
hospital's data: each site's share of the examples behind the updates it had accepted
(:func:`medfed.governance.contributions.data_size_contributions`). Under secure aggregation that is
all anyone can know, by design. A Shapley estimate needs the model of every coalition evaluated
on the sites' held-out data; ``medfed.simulation.contributions`` computes it (GTG-Shapley, Liu et
al. 2022) where the evaluation data is at hand, and says so in the record's ``method``.

Reputation (:mod:`medfed.governance.reputation`) folds every round's evidence; a rejected reply
weighs by its reason code, so a site sending NaN, a replay or a forged signature falls while a
hospital that refuses under its own policy does not. Reward points split a fixed pot per study by
contribution (:func:`medfed.governance.rewards.split_rewards`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from medfed.governance.contributions import data_size_contributions
from medfed.governance.reasons import reason_code
from medfed.governance.reputation import SiteRound, penalty_candidates, reputations
from medfed.governance.rewards import split_rewards
from medfed.store.records import RoundRecord

REWARD_POT = 1000
"""Points a completed study shares among its hospitals."""


def site_rounds(rounds: Sequence[RoundRecord]) -> list[SiteRound]:
    out = []
    for record in rounds:
        accepted = {m.node for m in record.per_node if m.kind == "train"}
        rejected: dict[str, list[str]] = defaultdict(list)
        for text in record.rejections:
            node, _, reason = text.partition(": ")
            rejected[node].append(reason_code(reason))
        for site in sorted({*record.selected_nodes, *accepted, *rejected}):
            out.append(
                SiteRound(site, record.round, participated=site in accepted or site in rejected,
                          accepted=site in accepted, rejected=tuple(rejected.get(site, ())),
                          flags=tuple(record.flags.get(site, ())) if site in accepted else ())
            )  # fmt: skip
    return out


def study_record(rounds: Sequence[RoundRecord]) -> dict[str, Any]:
    """The ``governance.reputation`` payload of a finished study."""
    examples: dict[str, int] = defaultdict(int)
    for record in rounds:
        for m in record.per_node:
            if m.kind == "train":
                examples[m.node] += m.num_examples
    contributions = data_size_contributions(dict(examples)) if examples else {}
    found = reputations(site_rounds(rounds))
    rewards = split_rewards(REWARD_POT, contributions)
    return {
        "method": "data_size",
        "sites": {
            site: {
                "rounds": r.rounds,
                "participation": round(r.participation, 6),
                "accepted": r.accepted,
                "rejected": r.rejected,
                "examples": examples.get(site, 0),
                "contribution": round(contributions.get(site, 0.0), 6),
                "reputation": round(r.score, 6),
                "reward_points": rewards.get(site, 0),
            }
            for site, r in found.items()
        },
        "penalty_candidates": penalty_candidates(found),
        "reward_pot": REWARD_POT,
    }
