"""Fixed-bin histograms, merging small bins, and quantiles with a stated error.

Fine bins come from the spec's edges ``e_0 < ... < e_B`` plus two open ends: fine bin 0 is
``(-inf, e_0)``, bin i is ``[e_(i-1), e_i)``, bin B + 1 is ``[e_B, inf)``. A histogram is released
over *merged* bins: adjacent fine bins are joined until every released column holds 0 or at least
k persons per bin (bins are cells too). A merged histogram is described by its boundaries, fine
bin indices ``b_0 = 0 < b_1 < ... < b_M = B + 2``; merged bin j covers fine bins b_j to b_(j+1) - 1.

Sites merge differently, so pooling uses the coarsest common partition: a boundary survives when
every contributing site has it. Every pooled bin's count is then an exact sum.

Quantiles follow numpy's default (``method="linear"``): with h = (n - 1) q the answer lies between
the order statistics of 0-based rank floor(h) and ceil(h). From a histogram we know which bin holds
each rank, so the answer lies in [left edge of floor(h)'s bin, right edge of ceil(h)'s bin]: that
interval is the stated error (one bin wide unless the two ranks straddle a boundary). The point
estimate interpolates linearly inside the bin holding rank h + 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def fine_counts(values: npt.NDArray[np.float64], edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Counts per fine bin (len(edges) + 1 of them) of the finite values given."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def merge_boundaries(counts: npt.NDArray[np.int64], k: int) -> tuple[int, ...]:
    """Boundaries of the finest merge where every column's bin holds 0 or >= k persons.

    ``counts`` is fine bins x columns. Greedy left to right; a small remainder at the right end
    is folded back into its left neighbours. If even one bin cannot satisfy a column (its total
    is below k) the result is the single bin ``(0, F)``; the caller checks ``is_safe``.
    """
    n_fine = counts.shape[0]
    bounds = [0]
    acc = np.zeros(counts.shape[1], dtype=np.int64)
    for i in range(n_fine):
        acc += counts[i]
        if _ok(acc, k):
            bounds.append(i + 1)
            acc[:] = 0
    if bounds[-1] != n_fine:
        if len(bounds) > 1:
            bounds[-1] = n_fine
        else:
            bounds.append(n_fine)
    merged = bounds
    while len(merged) > 2 and not all(_ok(c, k) for c in merged_counts(counts, merged)):
        merged = [*merged[:-2], n_fine]
    return tuple(merged)


def _ok(column_counts: npt.NDArray[np.int64], k: int) -> bool:
    return bool(np.all((column_counts == 0) | (column_counts >= k)))


def merged_counts(counts: npt.NDArray[np.int64], bounds: Sequence[int]) -> npt.NDArray[np.int64]:
    """Sum fine-bin counts (fine bins x columns, or a 1-D vector) into the merged bins."""
    return np.add.reduceat(counts, np.asarray(bounds[:-1]), axis=0)


def is_safe(counts: npt.NDArray[np.int64], bounds: Sequence[int], k: int) -> bool:
    return all(_ok(row, k) for row in merged_counts(counts, bounds))


def common_boundaries(partitions: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The coarsest partition every site's partition refines: boundaries all sites share."""
    shared = set(partitions[0])
    for p in partitions[1:]:
        shared &= set(p)
    return tuple(sorted(shared))


def coarsen(
    counts: Sequence[int], bounds: Sequence[int], target: Sequence[int]
) -> npt.NDArray[np.int64]:
    """Re-sum a merged histogram onto a coarser partition ``target`` (a subset of ``bounds``)."""
    out = np.zeros(len(target) - 1, dtype=np.int64)
    for j, c in enumerate(counts):
        out[int(np.searchsorted(target, bounds[j], side="right")) - 1] += c
    return out


@dataclass(frozen=True)
class Quantile:
    """A quantile estimate and the interval the exact sample quantile is known to lie in."""

    q: float
    estimate: float
    low: float
    high: float


def extended_edges(edges: Sequence[float]) -> tuple[float, ...]:
    return (-math.inf, *edges, math.inf)


def quantile(
    counts: Sequence[int], bounds: Sequence[int], edges: Sequence[float], q: float
) -> Quantile | None:
    """Quantile q of a merged histogram; None when it holds nobody."""
    total = int(sum(counts))
    if total == 0:
        return None
    ext = extended_edges(edges)
    cum = np.cumsum(np.asarray(counts, dtype=np.int64))
    h = (total - 1) * q

    def bin_of(rank: float) -> int:
        return int(np.searchsorted(cum, rank, side="right"))

    lo_bin, hi_bin = bin_of(math.floor(h)), bin_of(math.ceil(h))
    low, high = ext[bounds[lo_bin]], ext[bounds[hi_bin + 1]]
    pos = h + 0.5
    j = bin_of(pos)
    left, right = ext[bounds[j]], ext[bounds[j + 1]]
    before = float(cum[j - 1]) if j > 0 else 0.0
    if math.isinf(left):
        estimate = right
    elif math.isinf(right):
        estimate = left
    else:
        estimate = left + (pos - before) / float(counts[j]) * (right - left)
    return Quantile(q, estimate, low, high)
