"""The in-memory form of an imaging dataset: greyscale images with 0/1 labels, already split.

Like ``TabularDataset`` the split is fixed when the data is loaded, so every round evaluates on the
same images. Pixels are float32 in [0, 1] (windowed, MONOCHROME2: 0 is black); plans normalise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.data.tabular import check_split
from medfed.errors import DatasetError

_FEATURE = re.compile(r"^image:(\d+)x(\d+)x(\d+)$")


def image_feature(channels: int, height: int, width: int) -> str:
    """The one "feature" an imaging dataset declares, e.g. ``image:1x28x28``; a study names it
    in ``[dataset] features`` so a node with differently sized images refuses the task."""
    return f"image:{channels}x{height}x{width}"


def parse_image_feature(feature: str) -> tuple[int, int, int] | None:
    """(channels, height, width) of an ``image:CxHxW`` feature, or None for a table column."""
    match = _FEATURE.fullmatch(feature)
    if match is None:
        return None
    c, h, w = (int(g) for g in match.groups())
    return c, h, w


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images ``x`` (rows, channels, height, width), 0/1 labels ``y``: float32 train/test splits."""

    label: str
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.float32]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        shape = self.x_train.shape[1:]
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            check_split(split, x, y)
            if x.ndim != 4 or x.shape[1:] != shape:
                raise DatasetError(
                    f"{split} images have shape {x.shape}, expected (rows, channels, h, w) = "
                    f"(rows, {', '.join(map(str, shape))})"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = (int(d) for d in self.x_train.shape[1:])
        return c, h, w

    @property
    def features(self) -> tuple[str, ...]:
        return (image_feature(*self.image_shape),)

    @property
    def n_features(self) -> int:
        return 1

    @property
    def rows(self) -> int:
        return int(self.x_train.shape[0] + self.x_test.shape[0])
