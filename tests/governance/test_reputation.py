import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfed.errors import ConfigError
from medfed.governance.reputation import (
    ABSENT,
    LEARNING_RATE,
    PRIOR,
    SiteRound,
    penalty_candidates,
    reputations,
    round_score,
)


def accepted(site, rnd, contribution=None, flags=()):
    return SiteRound(site, rnd, True, True, (), flags, contribution)


def rejected(site, rnd, *codes):
    return SiteRound(site, rnd, True, False, codes)


def absent(site, rnd):
    return SiteRound(site, rnd, False)


def test_one_round_moves_the_prior_by_the_learning_rate():
    found = reputations([accepted("a", 1, 0.2), accepted("b", 1, 0.1)])
    assert found["a"].score == pytest.approx((1 - LEARNING_RATE) * PRIOR + LEARNING_RATE * 1.0)
    assert found["b"].score == pytest.approx((1 - LEARNING_RATE) * PRIOR + LEARNING_RATE * 0.75)


def test_severe_rejections_weigh_more_than_late_ones():
    late = round_score(rejected("a", 1, "late"), None)
    for worse in ("non_finite", "malformed", "invalid_signature", "replay"):
        assert round_score(rejected("a", 1, worse), None) < late
    assert round_score(rejected("a", 1, "late", "non_finite"), None) == 0.0
    assert round_score(rejected("a", 1, "refused"), None) == ABSENT
    assert round_score(rejected("a", 1, "something_new"), None) == pytest.approx(0.25)


def test_robust_aggregator_flags_lower_an_accepted_reply():
    clean = round_score(accepted("a", 1), None)
    clipped = round_score(accepted("a", 1, flags=("norm_clipped",)), None)
    outlier = round_score(accepted("a", 1, flags=("krum_outlier",)), None)
    assert outlier < clipped < clean


def test_a_noisy_site_falls_and_the_honest_ones_rise():
    records = []
    for rnd in range(1, 11):
        records += [accepted("good1", rnd, 0.03), accepted("good2", rnd, 0.02)]
        records += [accepted("noisy", rnd, -0.01, flags=("krum_outlier",))]
    found = reputations(records)
    assert found["noisy"].score < PRIOR < found["good2"].score < found["good1"].score
    assert penalty_candidates(found) == ["noisy"]
    assert found["noisy"].flagged == 10
    assert found["good1"].contribution == pytest.approx(0.3)


def test_summary_counts():
    records = [accepted("a", 1, 0.1), rejected("a", 2, "late"), absent("a", 3)]
    (a,) = reputations(records).values()
    assert (a.rounds, a.accepted, a.rejected, a.flagged) == (3, 1, 1, 0)
    assert a.participation == pytest.approx(2 / 3)


def test_records_are_taken_in_round_order_and_recent_rounds_count_more():
    records = [accepted("a", 2, 0.1), rejected("a", 1, "non_finite")]
    recovered = reputations(records)["a"]
    assert recovered == reputations(list(reversed(records)))["a"]
    relapsed = reputations([accepted("a", 1, 0.1), rejected("a", 2, "non_finite")])["a"]
    assert recovered.score > relapsed.score


def test_invalid_records_are_refused():
    with pytest.raises(ConfigError, match="twice"):
        reputations([absent("a", 1), absent("a", 1)])
    with pytest.raises(ConfigError, match="accepted but absent"):
        SiteRound("a", 1, participated=False, accepted=True)


evidence = st.one_of(
    st.builds(absent, st.just("x"), st.just(0)),
    st.builds(
        lambda c, f: accepted("x", 0, c, f),
        st.one_of(st.none(), st.floats(-1, 1, allow_nan=False)),
        st.lists(st.sampled_from(["krum_outlier", "norm_clipped", "other"]), max_size=2).map(tuple),
    ),
    st.builds(
        lambda codes: rejected("x", 0, *codes),
        st.lists(st.sampled_from(["late", "non_finite", "refused", "new"]), max_size=2),
    ),
)


@given(st.lists(evidence, max_size=30))
def test_score_stays_in_the_unit_interval(rounds):
    records = [
        SiteRound(r.site, i, r.participated, r.accepted, r.rejected, r.flags, r.contribution)
        for i, r in enumerate(rounds)
    ]
    for found in reputations([*records, accepted("y", 0, 0.5)]).values():
        assert 0.0 <= found.score <= 1.0


def test_a_harmful_update_counts_against_a_site_and_a_useless_one_is_neutral():
    records = []
    for rnd in range(1, 6):
        records += [accepted("good", rnd, 0.2), accepted("useless", rnd, 0.0)]
        records += [accepted("harmful", rnd, -0.1)]
    found = reputations(records)
    assert found["harmful"].score < PRIOR
    assert found["useless"].score == pytest.approx(PRIOR)
    assert found["good"].score > PRIOR


def test_without_contribution_estimates_participation_decides():
    records = [accepted("in", 1), absent("out", 1), accepted("in", 2), absent("out", 2)]
    found = reputations(records)
    assert found["in"].score > found["out"].score == pytest.approx(PRIOR)
    with pytest.raises(ConfigError, match="non-finite"):
        reputations([accepted("a", 1, float("nan"))])
