from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.analytics.histogram import (
    fine_counts,
    is_safe,
    merge_boundaries,
    merged_counts,
    quantile,
)

EDGES = tuple(float(e) for e in range(0, 101, 5))


def test_fine_bins_are_half_open_with_open_ends():
    counts = fine_counts(np.array([-1.0, 0.0, 4.999, 5.0, 100.0, 250.0]), EDGES)
    assert counts[0] == 1  # below the first edge
    assert counts[1] == 2  # [0, 5)
    assert counts[2] == 1  # [5, 10)
    assert counts[-1] == 2  # [100, inf)
    assert counts.sum() == 6


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 12), min_size=3, max_size=3), min_size=2, max_size=25),
    st.integers(3, 8),
)
def test_merged_bins_hold_zero_or_at_least_k_in_every_column(rows, k):
    counts = np.array(rows, dtype=np.int64)
    bounds = merge_boundaries(counts, k)
    assert bounds[0] == 0 and bounds[-1] == len(rows)
    assert list(bounds) == sorted(set(bounds))
    merged = merged_counts(counts, bounds)
    assert (merged.sum(axis=0) == counts.sum(axis=0)).all()
    column_ok = (counts.sum(axis=0) == 0) | (counts.sum(axis=0) >= k)
    if column_ok.all():
        assert is_safe(counts, bounds, k)
        assert ((merged == 0) | (merged >= k)).all()


@st.composite
def samples(draw: st.DrawFn) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 400))
    return rng.gamma(draw(st.floats(0.5, 8.0)), draw(st.floats(1.0, 12.0)), n)


@settings(max_examples=200, deadline=None)
@given(samples(), st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]), st.integers(3, 10))
def test_quantile_interval_holds_numpys_quantile_and_the_estimate(x, q, k):
    fine = fine_counts(x, EDGES)
    bounds = merge_boundaries(fine[:, None], k)
    counts = tuple(int(c) for c in merged_counts(fine, bounds))
    got = quantile([(counts, bounds)], EDGES, q)
    assert got is not None
    truth = float(np.quantile(x, q))
    assert got.low <= truth <= got.high
    assert got.low <= got.estimate <= got.high
    assert abs(got.estimate - truth) <= got.high - got.low


def test_dense_data_quartiles_are_within_one_bin_of_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(50, 12, 2000)
    fine = fine_counts(x, EDGES)
    bounds = merge_boundaries(fine[:, None], 5)
    counts = tuple(int(c) for c in merged_counts(fine, bounds))
    for q in (0.25, 0.5, 0.75):
        got = quantile([(counts, bounds)], EDGES, q)
        assert got is not None
        assert abs(got.estimate - np.quantile(x, q)) <= 5.0
        assert got.high - got.low == 5.0


@settings(max_examples=150, deadline=None)
@given(st.lists(samples(), min_size=2, max_size=5), st.sampled_from([0.25, 0.5, 0.75]))
def test_pooled_quantile_of_differently_merged_sites_brackets_numpy(parts, q):
    histograms = []
    for i, x in enumerate(parts):
        fine = fine_counts(x, EDGES)
        bounds = merge_boundaries(fine[:, None], 3 + 2 * i)
        histograms.append((tuple(int(c) for c in merged_counts(fine, bounds)), bounds))
    got = quantile(histograms, EDGES, q)
    assert got is not None
    truth = float(np.quantile(np.concatenate(parts), q))
    assert got.low <= truth <= got.high
    assert got.low <= got.estimate <= got.high


def test_pooling_keeps_the_boundaries_only_one_site_merged_away():
    # Site A merged [0, 5) and [5, 10); site B kept them. Fewer than 2 + 6 = 8 of the 20 persons
    # lie below 5 and 16 below 10, so the median is in [5, 10): one fine bin, where a common
    # partition of the two sites would only say [0, 10).
    a = ((0, 6, 4, 0), (0, 1, 3, 4, 22))
    b = ((0, 2, 8, 0), (0, 1, 2, 3, 22))
    got = quantile([a, b], EDGES, 0.5)
    assert got is not None
    assert (got.low, got.high) == (5.0, 10.0)


def test_empty_histogram_has_no_quantile():
    assert quantile([((0, 0), (0, 3, 22))], EDGES, 0.5) is None
