"""q-FedAvg: fairness across hospitals by weighting sites with a higher loss more.

Li, Sanjabi, Beirami, Smith, ICLR 2020, "Fair Resource Allocation in Federated Learning",
Algorithm 2. Each reply contributes F_k^q L (x - y_k) and h_k = q F_k^(q-1) ||L (x - y_k)||^2
+ L F_k^q, where F_k is the site's loss of the global model before training (metric
``initial_loss``) and L = 1 / (local learning rate x local steps) by default (the paper's 1/lr
assumes one local step); x+ = x - sum Delta_k / sum h_k. q = 0 is the
unweighted mean of the models; larger q pulls the model toward the worst-served hospitals.
Streaming: one sum of the models weighted by F_k^q, plus the scalar sum of h_k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from medfed.errors import StrategyError
from medfed.protocol.tensors import Manifest, Weights, manifest_of
from medfed.strategies.accumulators import cast_like, expect
from medfed.strategies.base import Accumulator, NDArray, Reply, StrategyDefaults
from medfed.strategies.fedavg import WeightedSum
from medfed.strategies.normalized import qfedavg_terms


class FairSums:
    def __init__(self, manifest: Manifest, x: Mapping[str, NDArray], q: float, lip: float) -> None:
        self.sum = WeightedSum(manifest)
        self.h = 0.0
        self._x, self._q, self._lip = x, q, lip

    @property
    def count(self) -> int:
        return self.sum.count

    def add(self, reply: Reply) -> None:
        loss = float(reply.metrics.get("initial_loss", math.nan))
        if not (math.isfinite(loss) and loss > 0):
            raise StrategyError("q-FedAvg needs each site's loss before training > 0")
        weight, h = qfedavg_terms(self._x, reply.weights, loss, self._q, self._lip)
        self.sum.add(reply.weights, weight)
        self.h += h


class QFedAvg(StrategyDefaults):
    name = "qfedavg"

    def __init__(self, q: float, lipschitz: float) -> None:
        if not (math.isfinite(q) and q >= 0):
            raise StrategyError(f"q-FedAvg q must be finite and >= 0, got {q}")
        if not (math.isfinite(lipschitz) and lipschitz > 0):
            raise StrategyError(f"q-FedAvg lipschitz must be finite and > 0, got {lipschitz}")
        self.q, self.lipschitz = float(q), float(lipschitz)

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        return FairSums(manifest_of(model), model, self.q, self.lipschitz)

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        sums = expect(acc, FairSums)
        mean = sums.sum.mean()
        scale = self.lipschitz * sums.sum.total_weight / sums.h
        new = {
            k: np.asarray(model[k], np.float64)
            - scale * (np.asarray(model[k], np.float64) - np.asarray(mean[k], np.float64))
            for k in model
        }
        return cast_like(new, model), dict(state)
