"""A ResNet for chest X-rays of any size from 16 px (``_networks.ResNet``).

Options: ``width`` (channels of the first stage, default 16; 64 is ResNet-18's), ``blocks``
(basic blocks per stage, default 2 = ResNet-18's layout), ``batch_norm`` (1 = BatchNorm, for
FedBN; default GroupNorm), ``large_input`` (1 = the ImageNet 7x7/stride-2 stem, for 128 px and
up) and the augmentations of ``_vision``. Weights do not depend on the image size.
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

_OPTIONS = _vision.VISION_OPTIONS | {"blocks", "large_input"}
DEFAULT_WIDTH = 16


class ResNetPlan:
    name = "resnet"
    version = "1"

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        from medfed.training.plans import _torch

        _torch.check_options(options, _OPTIONS)
        return _torch.init_weights(_model_from_options(options), seed)

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        return _vision.train(self.name, _OPTIONS, _model_from_options, weights, data, config)

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        from medfed.training.plans import _torch

        images = _vision.images(data, self.name)
        return _torch.evaluate(_model_of(weights), weights, images)

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        from medfed.training.plans import _torch

        images = _vision.images(data, self.name)
        return _torch.predict(_model_of(weights), weights, images)


def _model_of(weights: Weights) -> nn.Module:
    """The architecture that ``weights`` fit, read off their names and shapes."""
    from medfed.training.plans._networks import ResNet

    stem = weights.get("stem.0.weight")
    width = int(stem.shape[0]) if stem is not None else DEFAULT_WIDTH
    large = stem is not None and int(stem.shape[-1]) == 7
    blocks = len({n.split(".")[1] for n in weights if n.startswith("stages.")}) // 4
    batch_norm = any(name.endswith("running_mean") for name in weights)
    return ResNet(width, max(blocks, 1), batch_norm, large)


def _model_from_options(options: Mapping[str, float]) -> nn.Module:
    from medfed.training.plans._networks import ResNet

    return ResNet(
        _vision.width(options, DEFAULT_WIDTH),
        _vision.integer(options, "blocks", 2, 1, 8),
        _vision.flag(options, "batch_norm"),
        _vision.flag(options, "large_input"),
    )
