from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfed.errors import StrategyError
from medfed.strategies.site_weight import capped, largest_share, weight_cap


def _reference_level(weights: list[float], m: float) -> float:
    """Brute force: try every number k of capped sites (the k largest)."""
    ordered = sorted(weights, reverse=True)
    for k in range(1, len(ordered)):
        if k * m < 1:
            level = m * sum(ordered[k:]) / (1 - k * m)
            if ordered[k] <= level <= ordered[k - 1]:
                return level
    return ordered[-1]


def test_no_cap_when_every_share_is_within() -> None:
    assert weight_cap([100, 100, 100], 0.5) is None
    assert weight_cap([50, 50], 0.5) is None
    assert weight_cap([7], 1.0) is None


def test_one_heavy_site_is_capped_at_the_others_share() -> None:
    weights = [200.0, 100.0, 999_999_999.0]

    out = capped(weights, 0.5)

    assert out == [200.0, 100.0, 300.0]
    assert largest_share(out) == 0.5


def test_two_heavy_sites_are_capped_together() -> None:
    out = capped([1000.0, 900.0, 10.0, 10.0, 10.0], 0.3)

    assert out[0] == out[1] == pytest.approx(0.3 * 30 / (1 - 0.6))
    assert out[2:] == [10.0, 10.0, 10.0]
    assert largest_share(out) == pytest.approx(0.3)


def test_fewer_sites_than_the_cap_allows_weigh_the_same() -> None:
    assert capped([10.0, 30.0], 0.4) == [10.0, 10.0]


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_share_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(StrategyError, match="maximum share"):
        weight_cap([1.0, 2.0], bad)


def test_non_positive_weights_are_refused() -> None:
    with pytest.raises(StrategyError, match="finite and > 0"):
        weight_cap([1.0, 0.0], 0.5)


@given(
    weights=st.lists(st.floats(1.0, 1e9), min_size=1, max_size=12),
    m=st.floats(0.05, 1.0),
)
def test_capping_matches_the_reference_and_holds_the_cap(weights: list[float], m: float) -> None:
    level = weight_cap(weights, m)
    out = capped(weights, m)
    if level is None:
        assert out == weights
        assert largest_share(weights) <= m
        return
    assert level == pytest.approx(_reference_level(weights, m), rel=1e-9)
    for before, after in zip(weights, out, strict=True):
        assert after == min(before, level)  # the uncapped keep their weight
    if len(weights) * m >= 1 + 1e-9:
        assert largest_share(out) <= m * (1 + 1e-9)
    else:  # too few sites for the cap: all weigh the same (to rounding: 10 x 0.1 sits on the edge)
        assert max(out) == pytest.approx(min(out), rel=1e-9)


def test_reference_agrees_on_small_integer_grids() -> None:
    for weights in itertools.product([1.0, 5.0, 50.0], repeat=4):
        level = weight_cap(list(weights), 0.3)
        if level is not None:
            assert level == pytest.approx(_reference_level(list(weights), 0.3))
