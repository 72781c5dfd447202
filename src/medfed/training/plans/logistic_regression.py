"""Logistic regression: one linear layer and a sigmoid, FLamby's baseline for Fed-Heart-Disease.

torch is imported inside the methods so that looking this plan up (or hashing it) does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medfed.data.dataset import Dataset
from medfed.protocol.tensors import Weights
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult

if TYPE_CHECKING:
    from torch import nn

_OPTIONS: frozenset[str] = frozenset()


class LogisticRegressionPlan:
    name = "logistic_regression"
    version = "1"

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        from medfed.training.plans import _torch

        _torch.check_options(options, _OPTIONS)
        return _torch.init_weights(_model(n_features), seed)

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        from medfed.training.plans import _torch

        _torch.check_options(config.options, _OPTIONS)
        return _torch.train(_model(_torch.table_width(data, self.name)), weights, data, config)

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        from medfed.training.plans import _torch

        return _torch.evaluate(_model(_torch.table_width(data, self.name)), weights, data)

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        from medfed.training.plans import _torch

        return _torch.predict(_model(_torch.table_width(data, self.name)), weights, data)


def _model(n_features: int) -> nn.Module:
    from torch import nn

    return nn.Linear(n_features, 1)
