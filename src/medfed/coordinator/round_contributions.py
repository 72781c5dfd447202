"""Each site's contribution to a committed round, measured over the network (``contributions =
"shapley"`` or ``"leave_one_out"`` in the study spec).

After the round commits, the coordinator still holds copies of the round's accepted updates
(:attr:`medfed.coordinator.rounds.OpenRound.kept`). For each coalition the estimate needs, it
builds the coalition's model with the study's own strategy, stores it, and sends it to every
evaluating hospital as an EVALUATE task; the utility is the example-weighted mean of the spec's
``contributions_metric`` over their replies (:mod:`medfed.coordinator.coalitions`). ∅ is the
model the round started from and the full coalition the committed model, so neither is rebuilt.
Up to ``EXACT_UP_TO`` sites the Shapley value is exact (2^n - 2 extra evaluations per round);
beyond, GTG-Shapley estimates it (Liu et al. 2022) from far fewer; leave-one-out costs n.

What it costs in privacy, and why it is opt-in: a coalition of one is that hospital's own update
applied to the global model, and it goes to the other hospitals for evaluation. The protocol
document names the method, so every data steward approves it knowingly; under record-level DP
the coalition models are post-processing of DP updates and spend nothing more. Secure
aggregation, encrypted metrics and client-level DP refuse it (:class:`StudySpec`).

The result of each round is one ledger entry (``governance.contribution``): method, metric, the
evaluating hospitals, utilities before and after, each site's value. Every evaluating hospital
must answer every coalition's evaluation, or the utilities would compare models on different
patients: a hospital that does not is named and the round records no estimate rather than a
wrong one. A coordinator restarted between a round's commit and its estimate has lost the
updates; that round has no entry, and the study's total says how many rounds it sums.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from medfed.coordinator.coalitions import (
    Method,
    RoundUpdates,
    Scored,
    aggregate_coalition,
    round_contributions,
    weighted_metric,
)
from medfed.coordinator.spec import StudySpec
from medfed.errors import ConfigError, MedfedError
from medfed.protocol.tensors import Weights

EXACT_UP_TO = 5
"""Sites up to which a round's Shapley value is computed exactly (2^5 = 32 coalitions)."""

Evaluate = Callable[[str], Mapping[str, Scored]]
"""A stored model's hash -> each evaluating hospital's reply (the engine's EVALUATE tasks)."""
Store = Callable[[Weights], str]


class IncompleteEvaluation(MedfedError):
    """An evaluating hospital did not answer one coalition's evaluation."""


def method_for(spec: StudySpec, sites: int) -> Method:
    if spec.contributions == "leave_one_out":
        return "leave_one_out"
    return "exact" if sites <= EXACT_UP_TO else "gtg"


def measure_round(
    spec: StudySpec,
    updates: RoundUpdates,
    models: tuple[str, str],
    evaluators: Collection[str],
    evaluate: Evaluate,
    store: Store,
) -> dict[str, Any]:
    """The ``governance.contribution`` payload of one committed round; ``models``: the hashes of
    the model the round started from and of the one it committed."""
    players = frozenset(updates.replies)
    method = method_for(spec, len(players))
    base: dict[str, Any] = {
        "round": updates.round,
        "method": method,
        "metric": spec.contributions_metric,
        "evaluators": sorted(evaluators),
    }
    known = {frozenset(): models[0], players: models[1]}
    utilities: dict[frozenset[str], float] = {}

    def utility(coalition: frozenset[str]) -> float:
        if coalition not in utilities:
            sha = known.get(coalition) or store(aggregate_coalition(spec, updates, coalition))
            results = evaluate(sha)
            missing = sorted(set(evaluators) - set(results))
            if missing:
                raise IncompleteEvaluation(
                    f"{', '.join(missing)} did not evaluate the model of {sorted(coalition)}"
                )
            utilities[coalition] = weighted_metric(results, spec.contributions_metric)
        return utilities[coalition]

    try:
        rng = np.random.default_rng([spec.seed, updates.round])
        values, _ = round_contributions(players, utility, method, rng)
        before, after = utility(frozenset()), utility(players)
    except (IncompleteEvaluation, ConfigError) as exc:
        return base | {"error": str(exc), "evaluations": len(utilities)}
    return base | {
        "evaluations": len(utilities),
        "before": before,
        "after": after,
        "values": dict(sorted(values.items())),
    }


def per_round_values(payloads: list[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    """Round -> site -> value, from a study's ``governance.contribution`` entries (rounds that
    recorded an error are left out)."""
    return {
        int(p["round"]): {str(k): float(v) for k, v in p["values"].items()}
        for p in payloads
        if "values" in p
    }
