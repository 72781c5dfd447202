"""FedNova: normalized averaging, so hospitals that take more local steps do not dominate.

Wang et al., NeurIPS 2020, "Tackling the Objective Inconsistency Problem in Heterogeneous
Federated Optimization". With plain local SGD each site's normalized direction is
(x - y_i) / tau_i; the server steps tau_eff = sum p_i tau_i along their p-weighted mean. Streaming:
one weighted sum of the models with weights n_i / tau_i (``normalized.fednova_from_sums``).
Equals FedAvg when every site takes the same number of steps.
"""

from __future__ import annotations

from collections.abc import Mapping

from medfed.errors import StrategyError
from medfed.protocol.tensors import Manifest, Weights, manifest_of
from medfed.strategies.accumulators import cast_like, expect
from medfed.strategies.base import Accumulator, NDArray, Reply, StrategyDefaults
from medfed.strategies.fedavg import WeightedSum
from medfed.strategies.normalized import fednova_from_sums


class NormalizedSums:
    def __init__(self, manifest: Manifest) -> None:
        self.sum = WeightedSum(manifest)
        self.examples = 0.0
        self.steps_weighted = 0.0

    @property
    def count(self) -> int:
        return self.sum.count

    def add(self, reply: Reply) -> None:
        steps = float(reply.metrics.get("steps", 0.0))
        if not steps > 0:
            raise StrategyError("FedNova needs each reply's number of local steps (metric 'steps')")
        n = float(reply.num_examples)
        self.sum.add(reply.weights, n / steps)
        self.examples += n
        self.steps_weighted += n * steps


class FedNova(StrategyDefaults):
    name = "fednova"

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        return NormalizedSums(manifest_of(model))

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        sums = expect(acc, NormalizedSums)
        if sums.count == 0:
            raise StrategyError("no updates were added; there is nothing to aggregate")
        tau_eff = sums.steps_weighted / sums.examples
        new = fednova_from_sums(
            model, sums.sum.mean(), sums.sum.total_weight, sums.examples, tau_eff
        )
        return cast_like(new, model), dict(state)
