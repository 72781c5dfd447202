"""Mean and variance across sites without catastrophic cancellation.

Each site sends ``(n, mean, M2)`` with ``M2 = sum((x - mean)^2)`` computed by two passes over its
own rows. Sites are combined with the update of Chan, Golub & LeVeque ("Updating formulae and a
pairwise algorithm for computing sample variances", 1979):

    delta = mean_b - mean_a,  n = n_a + n_b,
    mean  = mean_a + delta * n_b / n,  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n

The textbook ``(sumsq - sum^2 / n) / (n - 1)`` subtracts two numbers of size ``n * mean^2``: for a
lab value with mean 1e4 and sd 1 it loses about eight of float64's sixteen digits. Chan's form
only ever adds non-negative terms.

Secure aggregation needs additive parts instead, so ``shifted`` gives ``(n, S1, S2)`` about a
centre ``c`` fixed by the spec (the middle of the bin range), ``S1 = sum(x - c)``,
``S2 = sum((x - c)^2)``: these add across sites, and with ``c`` near the mean the cancellation in
``S2 - S1^2 / n`` is small. ``from_shifted`` turns the summed parts back into ``Moments``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of one column at one site (or pooled)."""

    n: int
    mean: float
    m2: float

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1), as clinical tables report; NaN below two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


def moments_of(values: npt.NDArray[np.float64]) -> Moments:
    """Two-pass moments of the finite values given."""
    n = int(values.size)
    if n == 0:
        return Moments(0, math.nan, 0.0)
    mean = float(values.mean())
    return Moments(n, mean, float(np.sum((values - mean) ** 2)))


def merge(a: Moments, b: Moments) -> Moments:
    """Chan et al.'s pairwise update."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * b.n / n
    return Moments(n, mean, a.m2 + b.m2 + delta * delta * a.n * b.n / n)


def pool(parts: Sequence[Moments]) -> Moments:
    """Pairwise (tree) reduction, so rounding grows with log(sites), not with sites."""
    if not parts:
        return Moments(0, math.nan, 0.0)
    level = list(parts)
    while len(level) > 1:
        pairs = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def shifted(m: Moments, centre: float) -> tuple[float, float, float]:
    """The additive ``(n, S1, S2)`` about ``centre`` (see the module docstring)."""
    if m.n == 0:
        return (0.0, 0.0, 0.0)
    d = m.mean - centre
    return (float(m.n), m.n * d, m.m2 + m.n * d * d)


def from_shifted(n: float, s1: float, s2: float, centre: float) -> Moments:
    """Inverse of ``shifted`` (after summing across sites); M2 is clamped at zero."""
    count = round(n)
    if count == 0:
        return Moments(0, math.nan, 0.0)
    return Moments(count, centre + s1 / count, max(s2 - s1 * s1 / count, 0.0))
