"""Per-site feature standardization, fitted on the node's own training split.

Hospitals record in different units and populations (Switzerland's file codes cholesterol as 0
throughout; VA's patients are older and sicker), so one global model sees comparable inputs only
if each site rescales its own: z = (x - mean_site) / std_site. Fitting on the *local* training
split keeps the statistics at the hospital (nothing about the raw distribution leaves it) and
never looks at test rows. The price: the model is defined on site-standardized inputs, so a
deployment must standardize with its own site's training statistics too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from medfed.errors import TrainingError

_FLAT = 1e-8
"""A column whose std is below ``_FLAT * (1 + |mean|)`` is constant (up to rounding in the mean):
it is centred but not scaled, so floating-point noise is not blown up to unit variance."""


def fit_standardizer(
    x_train: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Column means and standard deviations (population, ddof=0), std of constant columns = 1."""
    if x_train.shape[0] == 0:
        raise TrainingError("cannot standardize: the training split has no rows")
    x = np.asarray(x_train, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std <= _FLAT * (1.0 + np.abs(mean))] = 1.0
    return mean, std


def pooled_standardizer(
    features: Sequence[str],
    x_train: npt.NDArray[np.float32],
    pooled: Mapping[str, tuple[float, float]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Federated standardization: the pooled (mean, std) of every feature that has them (from a
    statistics study over all sites, medfed.coordinator.stats_result), this site's own training
    statistics for the others (binary columns, which a statistics study does not pool)."""
    unknown = sorted(set(pooled) - set(features))
    if unknown:
        raise TrainingError(f"pooled statistics for columns the data does not have: {unknown}")
    mean, std = fit_standardizer(x_train)
    for j, name in enumerate(features):
        if name in pooled:
            m, s = pooled[name]
            if not (math.isfinite(m) and math.isfinite(s) and s > 0):
                raise TrainingError(f"pooled statistics of {name!r} are unusable: {m}, {s}")
            mean[j], std[j] = m, s
    return mean, std


def standardize(
    x: npt.NDArray[np.float32], mean: npt.NDArray[np.float64], std: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)
