"""What the imaging plans share: their options, normalisation layers and augmentation.

Normalisation in federation: BatchNorm's running statistics are per-hospital facts (scanner,
exposure, population), and averaging them across sites is what FedBN (Li et al., ICLR 2021)
avoids by keeping them local -- study option ``personalization = "fedbn"``. GroupNorm (Wu & He,
ECCV 2018) has no batch statistics at all, so it federates as plainly as a convolution and works
under DP-SGD, where BatchNorm's cross-row statistics make per-sample gradients undefined; it is
the default (``batch_norm = 0``).

torch is imported inside the functions so that looking a plan up (or hashing it) does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from medfed.data.dataset import Dataset
from medfed.data.images import ImageDataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.plan import LocalTrainConfig, TrainResult

if TYPE_CHECKING:
    import torch
    from torch import nn

AUGMENT_OPTIONS = frozenset({"augment_shift", "augment_rotate", "augment_flip", "augment_contrast"})
"""``augment_shift``: max translation in pixels; ``augment_rotate``: max rotation in degrees;
``augment_flip``: 1 = random horizontal flips; ``augment_contrast``: max relative change of
contrast and brightness. All default to 0 (no augmentation)."""
VISION_OPTIONS = AUGMENT_OPTIONS | {"width", "batch_norm"}
GROUPS = 8


def images(data: Dataset, plan: str) -> ImageDataset:
    """The dataset as images with one channel, or a clear refusal."""
    if not isinstance(data, ImageDataset):
        raise TrainingError(
            f"plan {plan!r} trains on images, but this dataset is a table of "
            f"{data.n_features} columns; use logistic_regression or mlp"
        )
    if data.image_shape[0] != 1:
        raise TrainingError(f"plan {plan!r} takes greyscale images, got {data.features[0]}")
    if min(data.image_shape[1:]) < 16:
        raise TrainingError(f"plan {plan!r} needs images of at least 16x16, got {data.features[0]}")
    return data


def train(
    plan: str,
    accepted: frozenset[str],
    build: Callable[[Mapping[str, float]], nn.Module],
    weights: Weights,
    data: Dataset,
    config: LocalTrainConfig,
) -> TrainResult:
    """An imaging plan's ``train``: check the option names and the images, build the model
    from the options, augment as they ask, run the shared loop."""
    from medfed.training.plans import _torch

    _torch.check_options(config.options, accepted)
    pictures = images(data, plan)
    model = build(config.options)
    return _torch.train(model, weights, pictures, config, augmentation(config.options))


def integer(options: Mapping[str, float], name: str, default: int, low: int, high: int) -> int:
    value = options.get(name, default)
    if not float(value).is_integer() or not low <= value <= high:
        raise TrainingError(f"option {name!r} must be an integer in [{low}, {high}], got {value}")
    return int(value)


def flag(options: Mapping[str, float], name: str) -> bool:
    value = options.get(name, 0.0)
    if value not in (0.0, 1.0):
        raise TrainingError(f"option {name!r} must be 0 or 1, got {value}")
    return value == 1.0


def width(options: Mapping[str, float], default: int) -> int:
    """Channels of the first stage; GroupNorm needs a multiple of its group count."""
    value = integer(options, "width", default, GROUPS, 512)
    if value % GROUPS:
        raise TrainingError(f"option 'width' must be a multiple of {GROUPS}, got {value}")
    return value


def norm(channels: int, batch_norm: bool) -> nn.Module:
    from torch import nn

    return nn.BatchNorm2d(channels) if batch_norm else nn.GroupNorm(GROUPS, channels)


def augmentation(
    options: Mapping[str, float],
) -> _Augment | None:
    """The training-time transform the options ask for, or None."""
    shift = integer(options, "augment_shift", 0, 0, 64)
    rotate = options.get("augment_rotate", 0.0)
    contrast = options.get("augment_contrast", 0.0)
    if not 0.0 <= rotate <= 45.0:
        raise TrainingError(f"option 'augment_rotate' must be in [0, 45] degrees, got {rotate}")
    if not 0.0 <= contrast <= 0.5:
        raise TrainingError(f"option 'augment_contrast' must be in [0, 0.5], got {contrast}")
    flip = flag(options, "augment_flip")
    if not (shift or rotate or contrast or flip):
        return None
    return _Augment(shift, math.radians(rotate), flip, contrast)


class _Augment:
    """Random affine (rotation, translation, flip) by bilinear resampling with border padding,
    then contrast/brightness jitter; every draw comes from the training loop's generator."""

    def __init__(self, shift: int, rotate: float, flip: bool, contrast: float) -> None:
        self.shift, self.rotate, self.flip, self.contrast = shift, rotate, flip, contrast

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        n, _, h, w = x.shape

        def uniform(scale: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2 - 1) * scale

        angle = uniform(self.rotate)
        sign = torch.ones(n)
        if self.flip:
            sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * sign, cos
        theta[:, 0, 2] = uniform(2.0 * self.shift / w)
        theta[:, 1, 2] = uniform(2.0 * self.shift / h)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
        if self.contrast:
            gain = (1.0 + uniform(self.contrast)).view(n, 1, 1, 1)
            bias = uniform(self.contrast).view(n, 1, 1, 1)
            out = out * gain + bias
        return out
