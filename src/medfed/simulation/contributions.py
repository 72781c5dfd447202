"""Each site's contribution to each round of a simulated study, as the coordinator would measure it.

The coordinator holds every accepted update of a round (unless secure aggregation hides them). For
a coalition S of sites, the study's own strategy aggregates S's updates alone into a model; the
utility ``U(S)`` is that model's federated evaluation, the example-weighted mean of one metric
over every site's held-out split, with ``U(∅)`` the model the round started from. The Shapley
value of ``U`` (``governance.contributions``) is then each site's contribution. In a networked
study the coordinator sends the coalition models out for evaluation; here ``Simulation.evaluate``
runs the nodes' exact evaluation code in process.

Updates are captured through the runner's ``tamper`` hook (returning nothing to replace), which
hands over the decoded models but not the replies' metrics or strategy extras: so this
implementation serves strategies whose aggregation reads only models and example counts, and
refuses the others (``NEEDS_FULL_REPLIES``). The example count of a reply is the site's training
rows, as every plan in ``medfed.training`` reports it, capped as the round engine caps it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from medfed.coordinator.claims import round_weight_cap
from medfed.coordinator.coalitions import (
    DEFAULT_GTG,
    Method,
    RoundUpdates,
    aggregate_coalition,
    coalition_utility,
    round_contributions,
)
from medfed.coordinator.replies import build_strategy
from medfed.coordinator.spec import StudySpec
from medfed.data.dataset import Dataset
from medfed.errors import ConfigError
from medfed.governance.contributions import GtgConfig
from medfed.governance.reputation import SiteRound
from medfed.protocol.tensors import Weights
from medfed.simulation.runner import Simulation, Tamper, simulate
from medfed.strategies.base import Reply

NEEDS_FULL_REPLIES = frozenset({"scaffold", "qfedavg", "fednova"})
"""Strategies that aggregate reply extras or metrics, which the tamper hook does not hand over."""


@dataclass(frozen=True)
class RoundContributions:
    round: int
    values: Mapping[str, float]
    before: float
    """U(∅): the utility of the model the round started from."""
    after: float
    """U(N): the utility of the round's aggregate of every reply."""
    evaluations: int


@dataclass
class ContributionRun:
    simulation: Simulation
    rounds: list[RoundContributions] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        """Each site's contribution summed over the rounds."""
        out: dict[str, float] = {}
        for entry in self.rounds:
            for site, value in entry.values.items():
                out[site] = out.get(site, 0.0) + value
        return out

    def site_rounds(self) -> list[SiteRound]:
        """The rounds as reputation evidence: every site took part and was accepted here."""
        return [
            SiteRound(site, entry.round, participated=True, accepted=True, contribution=value)
            for entry in self.rounds
            for site, value in sorted(entry.values.items())
        ]


def simulate_with_contributions(
    spec: StudySpec,
    sites: Mapping[str, Dataset],
    init: Weights,
    rng: np.random.Generator,
    method: Method = "gtg",
    metric: str = "auc",
    gtg: GtgConfig = DEFAULT_GTG,
) -> ContributionRun:
    """Run the study and, after each round, every site's contribution to it."""
    if spec.strategy in NEEDS_FULL_REPLIES or spec.secure_aggregation:
        raise ConfigError(
            f"contributions of a {spec.strategy} study"
            f"{' under secure aggregation' if spec.secure_aggregation else ''} need what this "
            "simulation cannot see: individual replies with their extras and metrics"
        )
    captured: dict[int, tuple[Weights, dict[str, Weights]]] = {}
    state = [build_strategy(spec).init_state(init)]
    run: list[RoundContributions] = []

    def capture(
        server_round: int, models: Mapping[str, Weights], model: Weights
    ) -> dict[str, Weights]:
        captured[server_round] = (dict(model), {k: dict(v) for k, v in models.items()})
        return {}

    def measure(server_round: int, sim: Simulation) -> None:
        model, models = captured.pop(server_round)
        updates = RoundUpdates(server_round, model, state[0], _replies(spec, sites, models))
        state[0] = dict(sim.state)
        utility = coalition_utility(
            lambda s: aggregate_coalition(spec, updates, s), sim.evaluate, metric
        )
        players = frozenset(models)
        values, calls = round_contributions(players, utility, method, rng, gtg)
        run.append(
            RoundContributions(server_round, values, utility(frozenset()), utility(players), calls)
        )

    tamper: Tamper = capture
    sim = simulate(spec, sites, init, tamper=tamper, after_round=measure)
    return ContributionRun(sim, run)


def _replies(
    spec: StudySpec, sites: Mapping[str, Dataset], models: Mapping[str, Weights]
) -> dict[str, Reply]:
    """Replies weighted as the round engine weighs them: training rows, capped per site."""
    counts = {site: max(1, len(sites[site].y_train)) for site in models}
    cap = round_weight_cap(spec.max_site_weight, list(counts.values()))
    return {
        site: Reply(site, weights, min(counts[site], cap) if cap else counts[site])
        for site, weights in models.items()
    }


def noisy_labels(data: Dataset, rng: np.random.Generator, test: bool = True) -> Dataset:
    """The site with every label replaced by a fair coin (its test split's too unless ``test`` is
    False): a hospital whose data carries no signal at all."""
    y_train = rng.integers(0, 2, size=len(data.y_train)).astype(data.y_train.dtype)
    y_test = rng.integers(0, 2, size=len(data.y_test)).astype(data.y_test.dtype)
    return dataclasses.replace(data, y_train=y_train, y_test=y_test if test else data.y_test)
