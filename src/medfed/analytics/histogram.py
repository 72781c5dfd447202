"""Fixed-bin histograms, merging small bins, and quantiles with a stated error.

Fine bins come from the spec's edges ``e_0 < ... < e_B`` plus two open ends: fine bin 0 is
``(-inf, e_0)``, bin i is ``[e_(i-1), e_i)``, bin B + 1 is ``[e_B, inf)``. A histogram is released
over *merged* bins: adjacent fine bins are joined until every released column holds 0 or at least
k persons per bin (bins are cells too). A merged histogram is described by its boundaries, fine
bin indices ``b_0 = 0 < b_1 < ... < b_M = B + 2``; merged bin j covers fine bins b_j to b_(j+1) - 1.

Sites merge differently. Pooling therefore works on the spec's fine boundaries: at each one, a
site's count of persons below it is exact where the site kept that boundary and otherwise bounded
by the counts at its merged bin's two ends; the pooled count is bounded by the sums.

Quantiles follow numpy's default (``method="linear"``): with h = (n - 1) q the answer lies between
the order statistics of 0-based rank floor(h) and ceil(h). From a histogram we know which bin holds
each rank (or, pooled, a run of fine bins that must hold it), so the answer lies in an interval
of bin edges: that interval is the stated error, one fine bin wide where nobody merged and the
two ranks share a bin. The point estimate interpolates the cumulative count, spreading each merged
bin uniformly over its width, at rank h + 1/2 (and is kept inside the interval).
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


def protect_histograms(
    fine: npt.NDArray[np.int64], released: Sequence[bool], k: int
) -> tuple[tuple[int, ...], tuple[tuple[int, ...] | None, ...]]:
    """Merge bins so every column an observer can see or derive has bins of 0 or >= k.

    ``fine`` is fine bins x columns, column 0 the overall one; ``released[c]`` says whether
    column c's histogram may be shown at all. Observable columns: each released stratum, and
    (when the overall column is released) the sum of the hidden strata, which is the overall
    column minus the released ones. The same rule serves a site (site.py) and the pooled sum of
    a secure query (secure_release.py). Returns the boundaries and the counts per merged bin
    of each column, None where not released (every column None when no merge is safe).
    """
    n_fine, n_cols = fine.shape
    if n_cols == 1:
        seen = [fine[:, 0]] if released[0] else []
    else:
        seen = [fine[:, c] for c in range(1, n_cols) if released[c]]
        hidden = [c for c in range(1, n_cols) if not released[c]]
        if released[0] and hidden:
            seen.append(fine[:, hidden].sum(axis=1))
    if not seen:
        return (0, n_fine), (None,) * n_cols
    criterion = np.stack(seen, axis=1)
    bounds = merge_boundaries(criterion, k)
    if not is_safe(criterion, bounds, k):
        return (0, n_fine), (None,) * n_cols
    merged = merged_counts(fine, bounds)
    return bounds, tuple(
        tuple(int(v) for v in merged[:, c]) if released[c] else None for c in range(n_cols)
    )


@dataclass(frozen=True)
class Quantile:
    """A quantile estimate and the interval the exact sample quantile is known to lie in."""

    q: float
    estimate: float
    low: float
    high: float


def extended_edges(edges: Sequence[float]) -> tuple[float, ...]:
    return (-math.inf, *edges, math.inf)


Histogram = tuple[Sequence[int], Sequence[int]]
"""A merged histogram: (counts per merged bin, boundaries)."""


def quantile(histograms: Sequence[Histogram], edges: Sequence[float], q: float) -> Quantile | None:
    """Quantile q of the union of the persons in ``histograms``; None when they hold nobody."""
    return quantiles(histograms, edges, (q,))[0]


def quantiles(
    histograms: Sequence[Histogram], edges: Sequence[float], qs: Sequence[float]
) -> tuple[Quantile | None, ...]:
    """Several quantiles from one pass over the histograms."""
    ext = np.asarray(extended_edges(edges))
    lower, upper, guess = _cdf_bounds(histograms, ext)
    total = int(upper[-1])
    if total == 0:
        return tuple(None for _ in qs)
    return tuple(_read(lower, upper, guess, ext, total, q) for q in qs)


def _read(
    lower: npt.NDArray[np.float64],
    upper: npt.NDArray[np.float64],
    guess: npt.NDArray[np.float64],
    ext: npt.NDArray[np.float64],
    total: int,
    q: float,
) -> Quantile:
    h = (total - 1) * q
    below = np.flatnonzero(upper <= math.floor(h))
    above = np.flatnonzero(lower >= math.ceil(h) + 1)
    low, high = float(ext[below[-1]]), float(ext[above[0]])
    pos = h + 0.5
    b = int(np.searchsorted(guess, pos, side="right"))
    left, right = float(ext[b - 1]), float(ext[b])
    if math.isinf(left) or math.isinf(right):
        estimate = right if math.isinf(left) else left
    else:
        share = (pos - guess[b - 1]) / (guess[b] - guess[b - 1])
        estimate = left + share * (right - left)
    return Quantile(q, min(max(estimate, low), high), low, high)


def _cdf_bounds(
    histograms: Sequence[Histogram], ext: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Bounds and a uniform-spread estimate of ``#{x < ext[b]}`` at every fine boundary b.

    A site's count below a fine boundary is exact at its own merged boundaries and otherwise
    lies between the counts at the merged bin's two ends; summing over sites bounds the pooled
    count. The estimate spreads each merged bin over its finite width (open ends get none).
    """
    widths = np.diff(ext)
    widths[~np.isfinite(widths)] = 0.0
    reach = np.concatenate([[0.0], np.cumsum(widths)])  # finite width left of each boundary
    fine = np.arange(ext.size)
    lower, upper, guess = np.zeros(ext.size), np.zeros(ext.size), np.zeros(ext.size)
    for counts, raw_bounds in histograms:
        bounds = np.asarray(raw_bounds, dtype=np.int64)
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(counts, dtype=np.float64))])
        last = bounds.size - 1
        j = np.searchsorted(bounds, fine, side="right") - 1  # merged bin starting at or left of b
        nxt = np.minimum(j + 1, last)
        exact = bounds[j] == fine
        lower += cum[j]
        upper += np.where(exact, cum[j], cum[nxt])
        span = reach[bounds[nxt]] - reach[bounds[j]]
        share = np.divide(
            reach[fine] - reach[bounds[j]], span, out=np.zeros(ext.size), where=span > 0
        )
        guess += cum[j] + np.where(exact, 0.0, share) * (cum[nxt] - cum[j])
    return lower, upper, guess
