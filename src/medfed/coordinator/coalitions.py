"""Each site's contribution to a round from the updates the coordinator holds: coalition models,
their utility and the Shapley (or leave-one-out) split of it.

For a coalition S of the round's sites, the study's own strategy aggregates S's updates alone into
a model (:func:`aggregate_coalition`); the utility ``U(S)`` is that model's federated evaluation,
the example-weighted mean of one metric over the evaluating sites' held-out splits
(:func:`weighted_metric`), with ``U(∅)`` the model the round started from. The values come from
:mod:`medfed.governance.contributions`. The round engine runs this over the network
(:mod:`medfed.coordinator.round_contributions`); ``medfed.simulation.contributions`` runs it in
process with the nodes' exact evaluation code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from medfed.coordinator.replies import build_strategy
from medfed.coordinator.spec import StudySpec
from medfed.errors import ConfigError
from medfed.governance.contributions import (
    GtgConfig,
    Utility,
    exact_shapley,
    gtg_shapley,
    leave_one_out,
)
from medfed.protocol.tensors import Weights
from medfed.strategies.base import Reply

Method = Literal["exact", "gtg", "leave_one_out"]
LOWER_IS_BETTER = frozenset({"loss"})
DEFAULT_GTG = GtgConfig()


class Scored(Protocol):
    """One site's evaluation: a node's reply or a simulated site's result."""

    @property
    def num_examples(self) -> int: ...

    @property
    def metrics(self) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class RoundUpdates:
    """What the coordinator holds after a round's replies: the model and strategy state the round
    started from, and each site's decoded, weighted reply."""

    round: int
    model: Weights
    state: Weights
    replies: Mapping[str, Reply]


def aggregate_coalition(
    spec: StudySpec, updates: RoundUpdates, coalition: frozenset[str]
) -> Weights:
    """The model the study's strategy makes from ``coalition``'s replies alone (∅: the round's
    starting model, the round without anyone)."""
    if not coalition:
        return dict(updates.model)
    strategy = build_strategy(spec)
    strategy.select(updates.round, sorted(coalition))
    acc = strategy.start_round(updates.model, updates.state)
    for site in sorted(coalition):
        acc.add(updates.replies[site])
    model, _ = strategy.aggregate(updates.round, acc, updates.model, updates.state)
    return model


def weighted_metric(results: Mapping[str, Scored], metric: str) -> float:
    """The example-weighted mean of ``metric`` over the sites reporting it, negated when lower is
    better (loss), so that a larger utility is always a better model."""
    pairs = [(r.metrics[metric], r.num_examples) for r in results.values() if metric in r.metrics]
    total = sum(n for _, n in pairs)
    if total == 0:
        raise ConfigError(f"no site reported the evaluation metric {metric!r}")
    mean = sum(value * n for value, n in pairs) / total
    return -mean if metric in LOWER_IS_BETTER else mean


def coalition_utility(
    aggregate: Callable[[frozenset[str]], Weights],
    evaluate: Callable[[Weights], Mapping[str, Scored]],
    metric: str,
) -> Utility:
    """U(S) = the federated evaluation of the model aggregated from S: what the coordinator
    computes by sending each coalition's model to the sites for evaluation."""

    def utility(coalition: frozenset[str]) -> float:
        return weighted_metric(evaluate(aggregate(coalition)), metric)

    return utility


def round_contributions(
    players: frozenset[str],
    utility: Utility,
    method: Method,
    rng: np.random.Generator,
    gtg: GtgConfig = DEFAULT_GTG,
) -> tuple[dict[str, float], int]:
    """(contribution by site, utility evaluations) by ``method``."""
    calls = 0

    def counted(coalition: frozenset[str]) -> float:
        nonlocal calls
        calls += 1
        return utility(coalition)

    if method == "exact":
        values = exact_shapley(players, counted)
    elif method == "leave_one_out":
        values = leave_one_out(players, counted)
    elif method == "gtg":
        values = dict(gtg_shapley(players, counted, rng, gtg).values)
    else:
        raise ConfigError(f"contribution method must be exact, gtg or leave_one_out: {method!r}")
    return values, calls
