"""A one-hidden-layer perceptron (ReLU): a small step up from logistic regression.

Option ``hidden`` (default 32) sets the width; ``batch_norm = 1`` adds a BatchNorm layer after
the hidden layer (for FedBN personalization, Li et al. ICLR 2021). ``evaluate`` reads both from
the weights' names and shapes.
torch is imported inside the methods so that looking this plan up (or hashing it) does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medfed.data.dataset import Dataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult

if TYPE_CHECKING:
    from torch import nn

_OPTIONS = frozenset({"hidden", "batch_norm"})
DEFAULT_HIDDEN = 32


class MlpPlan:
    name = "mlp"
    version = "1"

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        from medfed.training.plans import _torch

        _torch.check_options(options, _OPTIONS)
        return _torch.init_weights(_model(n_features, _hidden(options), _bn(options)), seed)

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        from medfed.training.plans import _torch

        _torch.check_options(config.options, _OPTIONS)
        model = _model(
            _torch.table_width(data, self.name), _hidden(config.options), _bn(config.options)
        )
        return _torch.train(model, weights, data, config)

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        from medfed.training.plans import _torch

        return _torch.evaluate(_model_of(weights, data, self.name), weights, data)

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        from medfed.training.plans import _torch

        return _torch.predict(_model_of(weights, data, self.name), weights, data)


def _model_of(weights: Weights, data: Dataset, plan: str) -> nn.Module:
    """The network that ``weights`` fit, read off their names and shapes."""
    from medfed.training.plans import _torch

    first = weights.get("0.weight")
    hidden = int(first.shape[0]) if first is not None and first.ndim == 2 else DEFAULT_HIDDEN
    return _model(_torch.table_width(data, plan), hidden, "1.running_mean" in weights)


def _hidden(options: Mapping[str, float]) -> int:
    value = options.get("hidden", DEFAULT_HIDDEN)
    if not float(value).is_integer() or not 1 <= value <= 4096:
        raise TrainingError(f"option 'hidden' must be an integer in [1, 4096], got {value}")
    return int(value)


def _bn(options: Mapping[str, float]) -> bool:
    value = options.get("batch_norm", 0.0)
    if value not in (0.0, 1.0):
        raise TrainingError(f"option 'batch_norm' must be 0 or 1, got {value}")
    return value == 1.0


def _model(n_features: int, hidden: int, batch_norm: bool = False) -> nn.Module:
    from torch import nn

    if batch_norm:
        return nn.Sequential(
            nn.Linear(n_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
