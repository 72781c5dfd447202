"""Run a study spec in one process, with the exact code a networked study runs.

Each round does what the round engine and the node executor do, in the same order: the
strategy selects sites, every site gets the same task settings (``replies.task_config``) and
runs ``local_update`` on its data with its own persistent state, each reply is decoded as the
coordinator decodes it (``replies.reply_unpacker``) and folded into the strategy's accumulator,
and the strategy aggregates (each reply's weight capped as the engine caps it, ``max_site_weight``,
from the sites' example counts). Replies are folded in site-name order; a networked round folds them
in arrival order, so the two agree up to float summation order (tests/e2e/test_simulation.py
checks one seed end to end).

``tamper`` lets a benchmark replace some sites' decoded models after they are computed (an attack
as the coordinator would receive it) to measure robust aggregators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from medfed.coordinator.claims import round_weight_cap
from medfed.coordinator.replies import build_strategy, reply_unpacker, task_config
from medfed.coordinator.spec import StudySpec
from medfed.data.dataset import Dataset
from medfed.errors import TrainingError
from medfed.node.executor import client_settings, local_config, record_dp_request
from medfed.privacy.record_level import plan_record_dp
from medfed.protocol.tensors import Weights
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.strategies.base import Reply
from medfed.training.local_update import (
    MemoryClientState,
    RoundView,
    local_evaluate,
    local_update,
)
from medfed.training.plan import DpSgdConfig, EvalResult, LocalTrainConfig
from medfed.training.registry import get_plan

Tamper = Callable[[int, Mapping[str, Weights], Weights], Mapping[str, Weights]]
"""(round, decoded models by site, global model) -> replacement models for the sites it attacks."""


@dataclass
class Simulation:
    spec: StudySpec
    sites: Mapping[str, Dataset]
    model: Weights
    state: Weights = field(default_factory=dict)
    site_state: dict[str, MemoryClientState] = field(default_factory=dict)
    history: list[Weights] = field(default_factory=list)
    upload_bytes: list[int] = field(default_factory=list)
    round_metrics: list[dict[str, float]] = field(default_factory=list)
    epsilon: dict[str, float] = field(default_factory=dict)
    """Record-level DP: each site's epsilon for this study so far (as its ledger would book it)."""
    dp_steps: dict[str, int] = field(default_factory=dict)

    def private(
        self, site: str, task: pb.TrainConfig, config: LocalTrainConfig
    ) -> LocalTrainConfig:
        """The site's DP-SGD settings, derived from its own data size as a node derives them."""
        request = record_dp_request(task)
        if not request.enabled:
            return config
        dp = plan_record_dp(request, len(self.sites[site].y_train), config.batch_size,
                            config.steps, config.epochs, self.spec.rounds)  # fmt: skip
        self.dp_steps[site] = self.dp_steps.get(site, 0) + dp.steps_per_round
        self.epsilon[site] = dp.epsilon_after(self.dp_steps[site])
        return dataclasses.replace(config, dp=DpSgdConfig(dp.noise_multiplier, dp.max_grad_norm))

    def evaluate(self, model: Weights | None = None) -> dict[str, EvalResult]:
        """Every site's test metrics for ``model`` (default: the current global model), with
        ``personal_*`` metrics when the study personalizes."""
        plan = get_plan(self.spec.plan, self.spec.plan_version)
        weights = self.model if model is None else model
        done = len(self.history)
        config = local_config(task_config(self.spec, max(1, done), {}, {}))
        settings = client_settings(task_config(self.spec, 1, {}, {}))
        out = {}
        for name, data in self.sites.items():
            state = RoundView(self.site_state.setdefault(name, MemoryClientState()), done + 1)
            out[name] = local_evaluate(plan, data, weights, config, settings, state)
        return out


def simulate(
    spec: StudySpec,
    sites: Mapping[str, Dataset],
    init: Weights,
    tamper: Tamper | None = None,
    after_round: Callable[[int, Simulation], None] | None = None,
) -> Simulation:
    """Run ``spec.rounds`` rounds with every site online; returns the final state and history."""
    if not sites:
        raise TrainingError("a simulation needs at least one site")
    plan = get_plan(spec.plan, spec.plan_version)
    strategy = build_strategy(spec)
    sim = Simulation(spec, sites, dict(init), strategy.init_state(init))
    for server_round in range(1, spec.rounds + 1):
        chosen = strategy.select(server_round, sorted(sites))
        acc = strategy.start_round(sim.model, sim.state)  # before configure_train, as the engine
        served = sim.model | strategy.broadcast(sim.state)
        task = task_config(spec, server_round, strategy.configure_train(server_round),
                           strategy.client_settings())  # fmt: skip
        config, settings = local_config(task), client_settings(task)
        unpack = reply_unpacker(spec, strategy, sim.model)
        replies: dict[str, Reply] = {}
        sent = 0
        for name in chosen:
            state = RoundView(sim.site_state.setdefault(name, MemoryClientState()), server_round)
            rng = np.random.default_rng([config.seed, server_round])
            site_config = sim.private(name, task, config)
            update = local_update(plan, sites[name], served, site_config, settings, state, rng)
            sent += sum(int(a.nbytes) for a in update.wire.values())
            weights, extras = unpack(update.wire) if unpack else (update.wire, {})
            replies[name] = Reply(name, weights, update.num_examples, update.metrics, extras)
        if tamper is not None:
            forged = tamper(server_round, {k: dict(r.weights) for k, r in replies.items()},
                            sim.model)  # fmt: skip
            for name, weights in forged.items():
                old = replies[name]
                replies[name] = Reply(name, weights, old.num_examples, old.metrics, old.extras)
        cap = round_weight_cap(spec.max_site_weight, [r.num_examples for r in replies.values()])
        for name in sorted(replies):
            reply = replies[name]
            weight = min(reply.num_examples, cap) if cap else reply.num_examples
            acc.add(dataclasses.replace(reply, num_examples=weight))
        sim.model, sim.state = strategy.aggregate(server_round, acc, sim.model, sim.state)
        sim.round_metrics.append(strategy.round_metrics(sim.state))
        sim.history.append(sim.model)
        sim.upload_bytes.append(sent)
        if after_round is not None:
            after_round(server_round, sim)
    return sim
