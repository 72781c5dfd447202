from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.analytics.release_log import ReleaseLog
from medfed.analytics.site import summarize
from medfed.analytics.spec import Column, ColumnKind, StatsSpec
from medfed.analytics.summary import CategoricalSummary, ContinuousSummary
from medfed.analytics.wire import to_arrays
from medfed.errors import ConfigError, DatasetError, DisclosureError

COLUMNS = (
    Column("age", ColumnKind.CONTINUOUS),
    Column("sex", ColumnKind.BINARY, ("female", "male")),
    Column("chest_pain", ColumnKind.CATEGORICAL, ("typical", "atypical", "non-anginal", "none")),
    Column("disease", ColumnKind.BINARY),
)
SPEC = StatsSpec(bins={"age": tuple(float(e) for e in range(25, 85, 5))}, group="disease")


def cohort(seed: int, n: int, rare: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.normal(55, 9, n),
            rng.integers(0, 2, n),
            rng.choice(4, n, p=[0.5, 0.3, 0.2 - rare, rare]),
            rng.integers(0, 2, n),
        ]
    ).astype(np.float64)


def released_counts(summary) -> list[int]:
    out = [*summary.totals]
    for f in summary.features:
        if isinstance(f, CategoricalSummary):
            out += [c for row in f.rows for c in row.cells if c is not None]
        else:
            out += [c for c in (*f.present, *f.missing) if c is not None]
            out += [m.n for m in f.moments if m is not None]
            out += [c for h in f.histogram if h is not None for c in h]
    out += [v for s in summary.attrition for v in (s.count, s.removed) if v is not None]
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(20, 300), st.integers(3, 10))
def test_no_released_count_is_below_k(seed, n, k):
    x = cohort(seed, n)
    x[np.random.default_rng(seed).random(n) < 0.02, 0] = np.nan
    try:
        summary = summarize(x, COLUMNS, SPEC, k, site="A")
    except DisclosureError:
        strata = np.bincount(x[:, 3].astype(int), minlength=2)
        assert n < k or np.any((strata > 0) & (strata < k))
        return
    assert summary.k == k
    assert all(c == 0 or c >= k for c in released_counts(summary))


def test_known_small_cell_is_hidden_with_a_complement():
    x = cohort(1, 200)
    x[:, 2] = 0
    x[:2, 2] = 3  # two persons with no chest pain
    summary = summarize(x, COLUMNS, SPEC, 5, site="A")
    pain = next(f for f in summary.features if f.name == "chest_pain")
    assert isinstance(pain, CategoricalSummary)
    none_row = next(r for r in pain.rows if r.level == "none")
    assert none_row.cells[0] is None
    assert sum(c is None for c in pain.rows[0].cells + none_row.cells) >= 2


def test_continuous_summary_matches_numpy_and_omits_min_and_max():
    x = cohort(2, 250)
    x[17, 0] = 83.123456789  # an extreme, inside the last bin
    x[18, 0] = 11.987654321  # below every edge
    summary = summarize(x, COLUMNS, SPEC, 5, site="A")
    age = summary.features[0]
    assert isinstance(age, ContinuousSummary)
    overall = age.moments[0]
    assert overall is not None
    assert overall.n == 250
    assert np.isclose(overall.mean, x[:, 0].mean(), rtol=1e-12)
    assert np.isclose(overall.std, x[:, 0].std(ddof=1), rtol=1e-12)
    arrays, meta = to_arrays(summary)
    sent = np.concatenate([a.ravel() for a in arrays.values()])
    assert x[:, 0].min() not in sent and x[:, 0].max() not in sent
    assert "83.123" not in str(meta) and "11.987" not in str(meta)


def test_a_few_missing_values_withhold_that_features_moments():
    x = cohort(3, 200)
    x[:3, 0] = np.nan
    age = summarize(x, COLUMNS, SPEC, 5, site="A").features[0]
    assert isinstance(age, ContinuousSummary)
    assert age.missing[0] is None and age.present[0] is None
    assert age.moments[0] is None and age.histogram[0] is None


def test_small_stratum_is_refused():
    x = cohort(4, 100)
    x[:, 3] = 0
    x[:3, 3] = 1
    with pytest.raises(DisclosureError, match="disease="):
        summarize(x, COLUMNS, SPEC, 5, site="A")


def test_cohort_below_k_is_refused():
    with pytest.raises(DisclosureError, match="cohort"):
        summarize(cohort(5, 4), COLUMNS, StatsSpec(bins=SPEC.bins), 5, site="A")


def test_k_below_three_is_refused():
    with pytest.raises(ConfigError):
        summarize(cohort(5, 100), COLUMNS, SPEC, 2, site="A")


def test_codes_outside_the_levels_are_refused():
    x = cohort(6, 100)
    x[0, 2] = 7
    with pytest.raises(DatasetError, match="chest_pain"):
        summarize(x, COLUMNS, SPEC, 5, site="A")


def test_continuous_column_without_bins_is_refused():
    with pytest.raises(ConfigError, match="no bins"):
        summarize(cohort(6, 100), COLUMNS, StatsSpec(group="disease"), 5, site="A")


def test_second_query_on_a_cohort_one_person_smaller_is_refused(tmp_path):
    x = cohort(7, 120)
    person_ids = np.arange(1000, 1120, dtype=np.int64)
    log = ReleaseLog.in_state_dir(tmp_path, "heart")
    summarize(x, COLUMNS, SPEC, 5, log, site="A", person_ids=person_ids)
    with pytest.raises(DisclosureError, match="differs from the earlier released"):
        summarize(x[1:], COLUMNS, SPEC, 5, log, site="A", person_ids=person_ids[1:])
    again = ReleaseLog.in_state_dir(tmp_path, "heart")
    summary = summarize(x, COLUMNS, SPEC, 5, again, site="A", person_ids=person_ids)
    assert summary.totals[0] == 120


def test_a_release_log_needs_person_ids():
    with pytest.raises(ConfigError, match="person id"):
        summarize(cohort(8, 100), COLUMNS, SPEC, 5, ReleaseLog("heart"), site="A")


def test_attrition_is_protected_and_must_end_at_the_cohort():
    x = cohort(9, 100)
    steps = [("in database", 400), ("adults", 103), ("cohort", 100)]
    summary = summarize(x, COLUMNS, SPEC, 5, site="A", attrition=steps)
    assert [s.count for s in summary.attrition] == [400, None, 100]
    with pytest.raises(ConfigError, match="cohort size"):
        summarize(x, COLUMNS, SPEC, 5, site="A", attrition=[("all", 400), ("cohort", 99)])


def test_a_study_may_regroup_but_not_rebin(tmp_path):
    x = cohort(10, 150)
    person_ids = np.arange(150, dtype=np.int64)
    log = ReleaseLog("heart")
    summarize(x, COLUMNS, SPEC, 5, log, site="A", person_ids=person_ids)
    by_sex = StatsSpec(bins=SPEC.bins, group="sex")
    assert summarize(x, COLUMNS, by_sex, 5, log, site="A", person_ids=person_ids).columns == (
        "overall",
        "sex=female",
        "sex=male",
    )
    shifted = StatsSpec(bins={"age": tuple(e + 1 for e in SPEC.bins["age"])}, group="disease")
    with pytest.raises(DisclosureError, match="bin edges"):
        summarize(x, COLUMNS, shifted, 5, log, site="A", person_ids=person_ids)
