"""What a finished study records of each hospital: participation, replies accepted and rejected
(with reason codes), its contribution estimate, reputation and reward points.

The contribution estimate is the one the study's spec chose and the coordinator can defend:

* ``data_size`` (the default, and all there is under secure aggregation): each site's share of
  the examples behind the updates it had accepted
  (:func:`medfed.governance.contributions.data_size_contributions`). It measures effort, not
  usefulness, and the record's ``method`` says so;
* ``shapley`` / ``leave_one_out``: each round's values measured over the network from the
  updates the coordinator held (:mod:`medfed.coordinator.round_contributions`, one ledger entry
  per round), summed over the rounds that have one. A site's ``contribution`` is then its share of
  the positive total (the reward split), ``value`` the sum itself in the metric's units.

Reputation (:mod:`medfed.governance.reputation`) folds every round's evidence, with each round's
measured contribution where there is one; a rejected reply weighs by its reason code, so a site
sending NaN, a replay or a forged signature falls while a hospital that refuses under its own
policy does not. Reward points split a fixed pot per study by contribution
(:func:`medfed.governance.rewards.split_rewards`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from medfed.governance.contributions import data_size_contributions
from medfed.governance.reasons import reason_code
from medfed.governance.reputation import SiteRound, penalty_candidates, reputations
from medfed.governance.rewards import split_rewards
from medfed.store.records import RoundRecord

REWARD_POT = 1000
"""Points a completed study shares among its hospitals."""


def site_rounds(
    rounds: Sequence[RoundRecord], measured: Mapping[int, Mapping[str, float]] | None = None
) -> list[SiteRound]:
    """The rounds as reputation evidence, with each round's ``measured`` contributions."""
    out = []
    for record in rounds:
        accepted = {m.node for m in record.per_node if m.kind == "train"}
        rejected: dict[str, list[str]] = defaultdict(list)
        for text in record.rejections:
            node, _, reason = text.partition(": ")
            rejected[node].append(reason_code(reason))
        values = (measured or {}).get(record.round, {})
        for site in sorted({*record.selected_nodes, *accepted, *rejected}):
            out.append(
                SiteRound(site, record.round, participated=site in accepted or site in rejected,
                          accepted=site in accepted, rejected=tuple(rejected.get(site, ())),
                          flags=tuple(record.flags.get(site, ())) if site in accepted else (),
                          contribution=values.get(site) if site in accepted else None)
            )  # fmt: skip
    return out


def study_record(
    rounds: Sequence[RoundRecord],
    method: str = "data_size",
    measured: Mapping[int, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The ``governance.reputation`` payload of a finished study; ``measured``: round -> site ->
    contribution, for a study whose ``method`` measures them."""
    examples: dict[str, int] = defaultdict(int)
    for record in rounds:
        for m in record.per_node:
            if m.kind == "train":
                examples[m.node] += m.num_examples
    measured = measured if method != "data_size" else None
    found = reputations(site_rounds(rounds, measured))
    values: dict[str, float] = {}
    if measured:
        for per_site in measured.values():
            for site, value in per_site.items():
                values[site] = values.get(site, 0.0) + value
        rewards = split_rewards(REWARD_POT, {s: values.get(s, 0.0) for s in found})
        positive = sum(max(v, 0.0) for v in values.values())
        contributions = {s: max(values.get(s, 0.0), 0.0) / positive if positive else 0.0
                         for s in found}  # fmt: skip
    else:
        contributions = data_size_contributions(dict(examples)) if examples else {}
        rewards = split_rewards(REWARD_POT, contributions)
    out: dict[str, Any] = {
        "method": method if measured else "data_size",
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
            | ({"value": round(values.get(site, 0.0), 9)} if measured else {})
            for site, r in found.items()
        },
        "penalty_candidates": penalty_candidates(found),
        "reward_pot": REWARD_POT,
    }
    if method != "data_size":
        out["measured_rounds"] = sorted(measured or {})
    return out
