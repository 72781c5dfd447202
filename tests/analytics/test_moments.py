from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.analytics.moments import from_shifted, merge, moments_of, pool, shifted


@st.composite
def site_splits(draw: st.DrawFn) -> list[np.ndarray]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    centre = draw(st.floats(-1e4, 1e4))
    spread = draw(st.floats(1.0, 100.0))
    sizes = draw(st.lists(st.integers(1, 200), min_size=1, max_size=8))
    return [rng.normal(centre, spread, n) for n in sizes]


@settings(max_examples=200, deadline=None)
@given(site_splits())
def test_pooled_mean_and_std_equal_numpy_on_the_concatenated_data(parts):
    pooled = pool([moments_of(p) for p in parts])
    everything = np.concatenate(parts)
    assert pooled.n == everything.size
    assert np.isclose(pooled.mean, everything.mean(), rtol=1e-9, atol=0)
    if everything.size > 1:
        assert np.isclose(pooled.std, everything.std(ddof=1), rtol=1e-9, atol=0)


@settings(max_examples=100, deadline=None)
@given(site_splits())
def test_shifted_sums_add_across_sites(parts):
    centre = 0.0
    sums = np.sum([shifted(moments_of(p), centre) for p in parts], axis=0)
    pooled = from_shifted(*sums, centre)
    everything = np.concatenate(parts)
    assert pooled.n == everything.size
    assert np.isclose(pooled.mean, everything.mean(), rtol=1e-9)


def test_chan_keeps_digits_the_textbook_formula_loses():
    rng = np.random.default_rng(7)
    parts = [1e8 + rng.normal(0, 1, 1000) for _ in range(4)]
    everything = np.concatenate(parts)
    chan = pool([moments_of(p) for p in parts])
    n = everything.size
    naive = (np.sum(everything**2) - np.sum(everything) ** 2 / n) / (n - 1)
    reference = everything.var(ddof=1)
    assert abs(chan.variance - reference) / reference < 1e-6
    assert abs(naive - reference) / reference > 1e-3


def test_merge_with_an_empty_side_is_the_other_side():
    a = moments_of(np.array([1.0, 2.0, 4.0]))
    empty = moments_of(np.array([]))
    assert merge(a, empty) == a
    assert merge(empty, a) == a
    assert np.isnan(pool([]).mean)
