"""A small convolutional network for chest X-rays at MedMNIST's 28x28 (any size >= 16 works).

``_networks.SmallCnn``: six 3x3 convolutions in three stages, each followed by GroupNorm (or
BatchNorm, option ``batch_norm = 1``) and ReLU, global average pooling, one logit. Options:
``width`` (channels of the first stage, default 16) and the augmentations of ``_vision``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medfed.data.dataset import Dataset
from medfed.protocol.tensors import Weights
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult
from medfed.training.plans import _vision

if TYPE_CHECKING:
    from torch import nn

DEFAULT_WIDTH = 16


class CnnPlan:
    name = "cnn"
    version = "1"

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        from medfed.training.plans import _torch

        _torch.check_options(options, _vision.VISION_OPTIONS)
        return _torch.init_weights(_model_from_options(options), seed)

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        return _vision.train(
            self.name, _vision.VISION_OPTIONS, _model_from_options, weights, data, config
        )

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        from medfed.training.plans import _torch

        images = _vision.images(data, self.name)
        return _torch.evaluate(_model_of(weights), weights, images)

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        from medfed.training.plans import _torch

        images = _vision.images(data, self.name)
        return _torch.predict(_model_of(weights), weights, images)


def _model_of(weights: Weights) -> nn.Module:
    """The network that ``weights`` fit, read off their names and shapes."""
    first = weights.get("features.0.weight")
    width = int(first.shape[0]) if first is not None else DEFAULT_WIDTH
    return _model(width, any(name.endswith("running_mean") for name in weights))


def _model_from_options(options: Mapping[str, float]) -> nn.Module:
    return _model(_vision.width(options, DEFAULT_WIDTH), _vision.flag(options, "batch_norm"))


def _model(width: int, batch_norm: bool) -> nn.Module:
    from medfed.training.plans._networks import SmallCnn

    return SmallCnn(width, batch_norm)
