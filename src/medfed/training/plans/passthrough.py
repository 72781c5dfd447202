"""A plan that does no learning, for measuring the network: transport, aggregation, storage.

``init_weights`` makes one float32 vector ``w`` of ``options["dim"]`` zeros; ``train`` returns
``w + options.get("delta", 0.001)``, so after r rounds of FedAvg every element equals r * delta
and a benchmark can check the aggregate without any torch in the process.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from medfed.data.dataset import Dataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult

_OPTIONS = frozenset({"dim", "delta"})


class PassthroughPlan:
    name = "passthrough"
    version = "1"

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        _check(options)
        if "dim" not in options:
            raise TrainingError("the passthrough plan needs option 'dim' (vector length)")
        dim = options["dim"]
        if not float(dim).is_integer() or dim < 1:
            raise TrainingError(f"option 'dim' must be a positive integer, got {dim}")
        return {"w": np.zeros(int(dim), dtype=np.float32)}

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        _check(config.options)
        w = weights.get("w")
        if list(weights) != ["w"] or w is None or w.ndim != 1 or w.dtype != np.float32:
            raise TrainingError("the passthrough plan expects exactly one float32 vector 'w'")
        delta = np.float32(config.options.get("delta", 0.001))
        # One allocation, no intermediate: this plan is used with models of gigabytes.
        out = np.add(w, delta, dtype=np.float32)
        return TrainResult(weights={"w": out}, num_examples=max(1, len(data.y_train)), metrics={})

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        return EvalResult(num_examples=len(data.y_test), metrics={"loss": 0.0})

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        raise TrainingError("the passthrough plan measures the network; it has no model to predict")


def _check(options: Mapping[str, float]) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TrainingError(
            f"unknown plan options {unknown}; passthrough accepts {sorted(_OPTIONS)}"
        )
