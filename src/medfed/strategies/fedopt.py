"""FedAdam, FedYogi, FedAdagrad: an adaptive optimizer on the server.

Reddi et al., ICLR 2021, "Adaptive Federated Optimization", Algorithm 2. The pseudo-gradient is
the example-weighted mean of the hospitals' models minus the global model; the server keeps the
moments m and v as state (``fedopt/m/<name>``, ``fedopt/v/<name>``), stored and committed with
the model, so a restarted coordinator continues the same optimizer trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from medfed.protocol.tensors import Weights, manifest_of
from medfed.strategies.accumulators import cast_like
from medfed.strategies.base import Accumulator, NDArray, StrategyDefaults
from medfed.strategies.fedavg import ExampleWeightedMean, weighted_mean_of
from medfed.strategies.fedopt_math import ServerOptimizerConfig, initial_state, server_step

M = "fedopt/m/"
V = "fedopt/v/"


class FedOpt(StrategyDefaults):
    def __init__(self, config: ServerOptimizerConfig) -> None:
        self.config = config
        self.name = f"fed{config.kind}"

    def init_state(self, model: Mapping[str, NDArray]) -> Weights:
        floats = {k: v for k, v in model.items() if np.dtype(v.dtype).kind == "f"}
        m, v = initial_state(floats, self.config.tau)
        return _as_state(m, v)

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        return ExampleWeightedMean(manifest_of(model))

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        mean = weighted_mean_of(acc, model)
        names = [k[len(M) :] for k in state if k.startswith(M)]
        x = {k: np.asarray(model[k], np.float64) for k in names}
        delta = {k: np.asarray(mean[k], np.float64) - x[k] for k in names}
        m = {k: state[M + k] for k in names}
        v = {k: state[V + k] for k in names}
        new_x, new_m, new_v = server_step(self.config, x, delta, m, v)
        merged = {k: (new_x[k] if k in new_x else mean[k]) for k in model}
        return cast_like(merged, model), _as_state(new_m, new_v)


def _as_state(m: Mapping[str, NDArray], v: Mapping[str, NDArray]) -> Weights:
    out: Weights = {M + k: np.asarray(a, np.float32) for k, a in m.items()}
    out.update({V + k: np.asarray(a, np.float32) for k, a in v.items()})
    return out
