"""The SQL aggregates against a plain-Python reference over random patients (Hypothesis)."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medfed.data.omop.features import extract
from medfed.data.omop.spec import parse_spec
from medfed.data.omop.store import OmopStore
from tests.data.omop.cohort_rows import SBP, Patient, days, insert

WINDOW = (-30, 0)
SPEC = f"""
version = 1
name = "ref"
[concept_sets]
entry = {{ concepts = [4296597] }}
outcome = {{ concepts = [317576] }}
sbp = {{ concepts = [{SBP}] }}
[cohort]
entry = "entry"
[outcome]
name = "target"
concept_set = "outcome"
time_at_risk = [0, 0]
""" + "".join(
    f"""
[[features]]
name = "{agg}"
concept_set = "sbp"
window = [{WINDOW[0]}, {WINDOW[1]}]
aggregate = "{agg}"
missing = "constant"
fill = -1.0
"""
    for agg in ("any", "count", "latest", "mean")
)

readings = st.lists(
    st.tuples(st.integers(-40, 5), st.integers(0, 4000).map(lambda v: v / 8)), max_size=6
)


def reference(measured: list[tuple[int, float]]) -> list[float]:
    """any, count, latest (ties: the later-inserted row), mean over the window; -1 if none."""
    inside = [(i, day, v) for i, (day, v) in enumerate(measured) if WINDOW[0] <= day <= WINDOW[1]]
    if not inside:
        return [0.0, 0.0, -1.0, -1.0]
    latest = max(inside, key=lambda r: (r[1], r[0]))[2]
    return [1.0, float(len(inside)), latest, float(np.mean([v for _, _, v in inside]))]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(readings, min_size=1, max_size=5))
def test_aggregates_match_a_python_reference(
    omop_store: OmopStore, patients: list[list[tuple[int, float]]]
) -> None:
    with omop_store.begin() as conn:
        for table in ("person", "procedure_occurrence", "measurement"):
            conn.execute(omop_store.table(table).delete())
    insert(
        omop_store,
        [
            Patient(
                f"p{i}",
                dt.date(1950, 1, 1),
                measurements=[(SBP, days(day), value, None) for day, value in measured],
            )
            for i, measured in enumerate(patients)
        ],
    )
    got = extract(omop_store.engine, parse_spec(SPEC)).dataset.x_train
    want = np.array([reference(m) for m in patients], dtype=np.float64)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)
