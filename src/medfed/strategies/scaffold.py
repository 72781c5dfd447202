"""SCAFFOLD: control variates that correct each hospital's client drift.

Karimireddy et al., ICML 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", Algorithm 1 with option II. The server keeps a control variate c (broadcast with the
model as ``scaffold/c/<name>``); each site keeps its own c_i, trains with gradients corrected by
c - c_i and replies with its model and the change of c_i (``scaffold/dc/<name>``). The server then
moves x by ``server_learning_rate`` times the mean model change, and c by |S|/N times the mean
control change. The control changes are summed like the model, so they can be masked the same way
under secure aggregation. The client side lives in ``medfed.training.local_update``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medfed.errors import StrategyError
from medfed.protocol.tensors import Manifest, TensorSpec, Weights, manifest_of
from medfed.strategies.accumulators import cast_like, expect
from medfed.strategies.base import Accumulator, NDArray, Reply, StrategyDefaults
from medfed.strategies.fedavg import WeightedSum

CONTROL = "scaffold/c/"
CONTROL_CHANGE = "scaffold/dc/"


def _float_names(model: Mapping[str, NDArray] | Manifest) -> list[str]:
    if isinstance(model, Manifest):
        return [t.name for t in model.tensors if np.dtype(t.dtype).kind == "f"]
    return [k for k, v in model.items() if np.dtype(v.dtype).kind == "f"]


class ScaffoldSums:
    def __init__(self, model: Manifest, control: Manifest) -> None:
        self.models = WeightedSum(model)
        self.controls = WeightedSum(control)

    @property
    def count(self) -> int:
        return self.models.count

    def add(self, reply: Reply) -> None:
        if not all(k.startswith(CONTROL_CHANGE) for k in reply.extras):
            raise StrategyError(f"SCAFFOLD extras must be named {CONTROL_CHANGE}<tensor>")
        change = {CONTROL + k[len(CONTROL_CHANGE) :]: v for k, v in reply.extras.items()}
        if manifest_of(change) != self.controls.manifest:
            raise StrategyError("SCAFFOLD reply lacks a matching control-variate change")
        self.models.add(reply.weights, float(reply.num_examples), reply.represents)
        self.controls.add(change, float(reply.represents), reply.represents)


class Scaffold(StrategyDefaults):
    name = "scaffold"

    def __init__(self, server_learning_rate: float = 1.0) -> None:
        if not (np.isfinite(server_learning_rate) and server_learning_rate > 0):
            raise StrategyError("SCAFFOLD server_learning_rate must be finite and > 0")
        self.server_learning_rate = float(server_learning_rate)
        self._eligible = 0

    def init_state(self, model: Mapping[str, NDArray]) -> Weights:
        return {CONTROL + k: np.zeros(model[k].shape, np.float32) for k in _float_names(model)}

    def broadcast(self, state: Mapping[str, NDArray]) -> Weights:
        return dict(state)

    def reply_extras(self, model: Manifest) -> Manifest:
        shapes = {t.name: t.shape for t in model.tensors}
        return Manifest(
            tuple(TensorSpec(CONTROL_CHANGE + k, "float32", shapes[k]) for k in _float_names(model))
        )

    def client_settings(self) -> dict[str, str]:
        return {"algorithm": "scaffold"}

    def select(self, server_round: int, nodes: Sequence[str]) -> list[str]:
        self._eligible = len(nodes)
        return list(nodes)

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        return ScaffoldSums(manifest_of(model), manifest_of(state))

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        sums = expect(acc, ScaffoldSums)
        mean = sums.models.mean()
        lr = self.server_learning_rate
        moved = {
            k: np.asarray(model[k], np.float64)
            + lr * (np.asarray(mean[k], np.float64) - np.asarray(model[k], np.float64))
            for k in model
        }
        fraction = sums.count / max(self._eligible, sums.count)
        change = sums.controls.mean()
        control: Weights = {
            k: (
                np.asarray(state[k], np.float64) + fraction * np.asarray(change[k], np.float64)
            ).astype(np.float32)
            for k in state
        }
        return cast_like(moved, model), control
