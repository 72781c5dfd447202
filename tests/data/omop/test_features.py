from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from medfed.data.omop.features import extract, split_rows, store_fingerprint
from medfed.data.omop.spec import SplitRule, parse_spec
from medfed.data.omop.store import OmopStore
from medfed.errors import DatasetError
from tests.data.omop.cohort_rows import (
    CHOL,
    CORONARY,
    LOCAL_A,
    LOCAL_B,
    NO,
    SBP,
    YES,
    Patient,
    days,
    insert,
)

HEAD = """
version = 1
name = "t"
[concept_sets]
entry = { concepts = [4296597] }
coronary = { concepts = [317576] }
sbp = { concepts = [3004249] }
chol = { concepts = [3027114] }
flag = { concepts = [2000000001] }
a = { concepts = [2000000001] }
b = { concepts = [2000000002] }
[cohort]
entry = "entry"
[outcome]
name = "target"
concept_set = "coronary"
time_at_risk = [0, 30]
"""


def spec_with(features: str, split: str = "") -> str:
    return HEAD + features + split


AGE_SEX = """
[[features]]
name = "age"
kind = "age"
[[features]]
name = "sex"
kind = "sex"
"""


def test_age_sex_and_label_per_person(omop_store: OmopStore) -> None:
    insert(
        omop_store,
        [
            Patient("p1", dt.date(1960, 6, 15), conditions=[(CORONARY, days(10))]),
            Patient("p2", dt.date(1960, 6, 16), male=False, conditions=[(CORONARY, days(31))]),
            Patient("p3", None, conditions=[(CORONARY, days(-1))]),
        ],
    )
    spec = parse_spec(spec_with(AGE_SEX))
    data = extract(omop_store.engine, spec).dataset
    assert data.features == ("age", "sex")
    # p3 has no birth month/day: age is the year difference; missing is never the case here
    np.testing.assert_array_equal(data.x_train, [[60, 1], [59, 0], [120, 1]])
    np.testing.assert_array_equal(data.y_train, [1, 0, 0])  # p2 outside 0..30, p3 before index
    assert data.x_test.shape == (0, 2)


def test_aggregates_over_window(omop_store: OmopStore) -> None:
    m = [
        (SBP, days(-400), 200.0, None),  # outside -365..0
        (SBP, days(-10), 120.0, None),
        (SBP, days(0), 130.0, None),
        (SBP, days(1), 999.0, None),  # after index
        (CHOL, days(-5), 5.5, None),
    ]
    insert(omop_store, [Patient("p1", dt.date(1950, 1, 1), measurements=m)])
    features = "".join(
        f"""
[[features]]
name = "{name}"
concept_set = "{cs}"
window = [-365, 0]
aggregate = "{agg}"
missing = "constant"
fill = -1.0
"""
        for name, cs, agg in [
            ("sbp_latest", "sbp", "latest"),
            ("sbp_mean", "sbp", "mean"),
            ("sbp_count", "sbp", "count"),
            ("sbp_any", "sbp", "any"),
            ("flag_latest", "flag", "latest"),
            ("flag_count", "flag", "count"),
        ]
    )
    data = extract(omop_store.engine, parse_spec(spec_with(features))).dataset
    np.testing.assert_array_equal(data.x_train, [[130, 125, 2, 1, -1, 0]])


def test_value_map_and_categorical(omop_store: OmopStore) -> None:
    insert(
        omop_store,
        [
            Patient("p1", dt.date(1950, 1, 1), measurements=[(LOCAL_A, days(0), None, YES)]),
            Patient(
                "p2",
                dt.date(1950, 1, 1),
                measurements=[(LOCAL_A, days(-3), None, NO), (LOCAL_B, days(-1), None, None)],
            ),
            Patient("p3", dt.date(1950, 1, 1)),
        ],
    )
    features = f"""
[[features]]
name = "flag"
concept_set = "flag"
window = [-30, 0]
value_map = {{ "{YES}" = 1.0, "{NO}" = 0.0 }}
missing = "constant"
indicator = true
[[features]]
name = "kind"
kind = "categorical"
window = [-30, 0]
missing = "constant"
indicator = true
levels = [
  {{ label = "none", concept_set = "a", value_concepts = [{YES}] }},
  {{ label = "a_no", concept_set = "a", value_concepts = [{NO}] }},
  {{ label = "b", concept_set = "b" }},
]
"""
    data = extract(omop_store.engine, parse_spec(spec_with(features))).dataset
    assert data.features == ("flag", "flag_missing", "kind_a_no", "kind_b", "kind_missing")
    np.testing.assert_array_equal(
        data.x_train,
        [
            [1, 0, 0, 0, 0],  # YES: the reference level
            [0, 0, 0, 1, 0],  # b on day -1 is later than a_no on day -3
            [0, 1, 0, 0, 1],  # nothing seen
        ],
    )


def test_drop_then_split_then_median_from_train_rows(omop_store: OmopStore) -> None:
    patients = [
        Patient(
            f"p{i:02d}",
            dt.date(1950, 1, 1),
            measurements=[] if i % 5 == 0 else [(SBP, days(0), float(100 + i), None)],
            conditions=[(CORONARY, days(0))] if i % 2 else [],
        )
        for i in range(20)
    ]
    patients.append(Patient("zz", None))  # no birth date at all: not dropped (year 1900 stands)
    insert(omop_store, patients)
    features = """
[[features]]
name = "sbp"
concept_set = "sbp"
missing = "median"
indicator = true
"""
    split = """
[split]
method = "stratified"
train_fraction = 0.5
seed = 7
"""
    result = extract(omop_store.engine, parse_spec(spec_with(features, split)))
    data = result.dataset
    labels = np.array([1.0 if i % 2 else 0.0 for i in range(20)] + [0.0], dtype=np.float32)
    train = split_rows(SplitRule("stratified", 0.5, 7), labels)
    raw = np.array([np.nan if i % 5 == 0 else 100 + i for i in range(20)] + [np.nan])
    median = np.median(raw[train][~np.isnan(raw[train])])
    filled = np.where(np.isnan(raw), median, raw)
    np.testing.assert_array_equal(data.x_train[:, 0], filled[train].astype(np.float32))
    np.testing.assert_array_equal(data.x_test[:, 0], filled[~train].astype(np.float32))
    np.testing.assert_array_equal(data.x_train[:, 1], np.isnan(raw[train]))
    np.testing.assert_array_equal(data.y_test, labels[~train])
    assert result.attrition[-1].persons == 21


def test_drop_removes_persons_and_counts_them(omop_store: OmopStore) -> None:
    insert(
        omop_store,
        [
            Patient("a", dt.date(1950, 1, 1), measurements=[(SBP, days(0), 1.0, None)]),
            Patient("b", dt.date(1950, 1, 1)),
        ],
    )
    features = '[[features]]\nname = "sbp"\nconcept_set = "sbp"\n'
    result = extract(omop_store.engine, parse_spec(spec_with(features)))
    assert [s.persons for s in result.attrition] == [2, 1]
    np.testing.assert_array_equal(result.dataset.x_train, [[1.0]])


def test_cache_hits_until_data_or_watermark_changes(omop_store: OmopStore, tmp_path: Path) -> None:
    insert(omop_store, [Patient("a", dt.date(1950, 1, 1))])
    spec = parse_spec(spec_with(AGE_SEX))
    first = extract(omop_store.engine, spec, cache_dir=tmp_path, watermark="7")
    again = extract(omop_store.engine, spec, cache_dir=tmp_path, watermark="7")
    assert not first.from_cache and again.from_cache
    np.testing.assert_array_equal(again.dataset.x_train, first.dataset.x_train)
    assert again.attrition == first.attrition
    assert not extract(omop_store.engine, spec, cache_dir=tmp_path, watermark="8").from_cache
    before = store_fingerprint_of(omop_store)
    insert(omop_store, [Patient("b", dt.date(1951, 1, 1))])
    assert store_fingerprint_of(omop_store) != before
    grown = extract(omop_store.engine, spec, cache_dir=tmp_path, watermark="8")
    assert not grown.from_cache and grown.dataset.rows == 2
    assert len(list(tmp_path.glob("*.npz"))) == 1


def store_fingerprint_of(store: OmopStore) -> str:
    with store.engine.connect() as conn:
        return store_fingerprint(conn)


def test_too_few_rows_to_split_is_refused(omop_store: OmopStore) -> None:
    insert(omop_store, [Patient("a", dt.date(1950, 1, 1))])
    split = '[split]\nmethod = "stratified"\n'
    with pytest.raises(DatasetError, match="cannot split 1 rows"):
        extract(omop_store.engine, parse_spec(spec_with(AGE_SEX, split)))
