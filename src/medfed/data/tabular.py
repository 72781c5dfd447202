"""The in-memory form every connector produces: a binary-labelled table, already split.

The split is fixed when the data is loaded (by the file's split column or a seeded stratified
split), never by the training plan, so every round of a study evaluates on the same test rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from medfed.errors import DatasetError


@dataclass(frozen=True, eq=False)
class TabularDataset:
    """Features ``x`` (rows x len(features)) and 0/1 labels ``y``, as float32 train and test splits.

    ``eq=False``: arrays have no single truth value, so identity is the only sane equality.
    """

    features: tuple[str, ...]
    label: str
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.float32]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.float32]
    standardization: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None
    """Mean and std per feature that the plans standardize with, set by the node for a study
    with federated (pooled) statistics; None: each plan fits them on this training split."""
    read_state: Mapping[str, float] = field(default_factory=dict)
    """What the rows were read under, reported with the round: an OMOP dataset read through
    consent gives ``consented_n`` and ``consent_watermark``; empty otherwise."""

    def __post_init__(self) -> None:
        width = len(self.features)
        if self.standardization is not None:
            mean, std = self.standardization
            if mean.shape != (width,) or std.shape != (width,) or not np.all(std > 0):
                raise DatasetError(f"standardization needs {width} means and positive stds")
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            check_split(split, x, y)
            if x.ndim != 2 or x.shape[1] != width:
                raise DatasetError(
                    f"{split} features have shape {x.shape}, expected (rows, {width})"
                )

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def rows(self) -> int:
        return int(self.x_train.shape[0] + self.x_test.shape[0])


def check_split(split: str, x: npt.NDArray[np.generic], y: npt.NDArray[np.generic]) -> None:
    """What every split of every dataset kind must be: float32 inputs, one 0/1 label a row."""
    if x.dtype != np.float32 or y.dtype != np.float32:
        raise DatasetError(f"{split} split must be float32, got x {x.dtype}, y {y.dtype}")
    if y.shape != (x.shape[0],):
        raise DatasetError(f"{split} labels have shape {y.shape}, expected ({x.shape[0]},)")
    if not bool(np.isin(y, (0.0, 1.0)).all()):
        raise DatasetError(f"{split} labels must all be 0 or 1")
