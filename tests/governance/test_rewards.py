import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfed.errors import ConfigError
from medfed.governance.rewards import split_rewards, study_rewards


def test_split_by_contribution_with_largest_remainders():
    assert split_rewards(100, {"a": 0.5, "b": 0.3, "c": 0.2}) == {"a": 50, "b": 30, "c": 20}
    # 10/3 each: floors 3 + 3 + 3, the last point to the first name
    assert split_rewards(10, {"c": 1.0, "a": 1.0, "b": 1.0}) == {"a": 4, "b": 3, "c": 3}


def test_negative_contributions_earn_nothing():
    assert split_rewards(90, {"good": 0.2, "ok": 0.1, "noisy": -0.3}) == {
        "good": 60,
        "noisy": 0,
        "ok": 30,
    }


def test_no_positive_contribution_splits_equally():
    assert split_rewards(7, {"a": -1.0, "b": 0.0}) == {"a": 4, "b": 3}
    assert split_rewards(5, {}) == {}


def test_study_rewards_net_the_rounds_before_clipping():
    rounds = [{"a": 0.5, "b": 0.125}, {"a": -0.25, "b": 0.125}]
    assert study_rewards(10, rounds) == {"a": 5, "b": 5}


def test_bad_input_is_refused():
    with pytest.raises(ConfigError):
        split_rewards(-1, {"a": 1.0})
    with pytest.raises(ConfigError, match="non-finite"):
        split_rewards(10, {"a": float("nan")})


contributions = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.floats(-10, 10, allow_nan=False, allow_subnormal=False),
    max_size=8,
)


@given(st.integers(0, 10**9), contributions)
def test_points_sum_to_the_pot_and_follow_the_shares(pot, shares):
    points = split_rewards(pot, shares)
    assert sorted(points) == sorted(shares)
    if not shares:
        return
    assert sum(points.values()) == pot
    positive = {s: max(0.0, v) for s, v in shares.items()}
    total = sum(positive.values())
    for site, got in points.items():
        exact = pot * positive[site] / total if total > 0 else pot / len(shares)
        assert abs(got - exact) <= 1 + 1e-6 * pot
        if total > 0 and positive[site] == 0:
            assert got == 0


@given(st.integers(0, 1000), contributions)
def test_splitting_is_order_independent(pot, shares):
    reordered = dict(reversed(list(shares.items())))
    assert split_rewards(pot, reordered) == split_rewards(pot, shares)
