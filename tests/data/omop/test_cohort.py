from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from medfed.data.omop.cohort import build_cohort
from medfed.data.omop.spec import parse_spec
from medfed.data.omop.store import OmopStore
from tests.data.omop.cohort_rows import INDEX, STRESS_TEST, Patient, days, insert

SPEC = """
version = 1
name = "t"
[concept_sets]
entry = {{ concepts = [{entry}], descendants = {descendants} }}
outcome = {{ concepts = [317576] }}
[cohort]
entry = "entry"
{rules}
[outcome]
name = "target"
concept_set = "outcome"
time_at_risk = [0, 0]
[[features]]
name = "age"
kind = "age"
"""


def spec(rules: str = "", entry: int = STRESS_TEST, descendants: bool = False) -> str:
    return SPEC.format(rules=rules, entry=entry, descendants=str(descendants).lower())


def run(store: OmopStore, text: str) -> tuple[list[tuple[str | None, dt.date]], list[int]]:
    with store.engine.connect() as conn:
        cohort = build_cohort(conn, parse_spec(text))
    entries = [(e.person_source_value, e.index_date) for e in cohort.entries]
    return entries, [step.persons for step in cohort.attrition]


def test_first_or_all_occurrences_in_source_value_order(omop_store: OmopStore) -> None:
    insert(
        omop_store,
        [
            Patient("b", dt.date(1950, 1, 1), entries=[days(5), days(-5)]),
            Patient("a", dt.date(1950, 1, 1), entries=[INDEX]),
            Patient("c", dt.date(1950, 1, 1), entries=[]),  # never enters
        ],
    )
    first, attrition = run(omop_store, spec())
    assert first == [("a", INDEX), ("b", days(-5))]
    assert attrition == [2]
    every, _ = run(omop_store, spec('occurrence = "all"'))
    assert every == [("a", INDEX), ("b", days(-5)), ("b", days(5))]


def test_inclusion_rules_and_attrition(omop_store: OmopStore) -> None:
    insert(
        omop_store,
        [
            Patient("young", dt.date(2003, 6, 16)),  # 16 at index, a day short of 17
            Patient("adult", dt.date(1980, 1, 1), observed_from=days(-400)),
            Patient("woman", dt.date(1980, 1, 1), male=False, observed_from=days(-400)),
            Patient("new", dt.date(1980, 1, 1), observed_from=days(-10)),
            Patient("old", dt.date(1920, 1, 1), observed_from=days(-400)),
        ],
    )
    rules = """
min_age = 17
max_age = 90
sex = ["male"]
prior_observation_days = 365
"""
    entries, attrition = run(omop_store, spec(rules))
    assert entries == [("adult", INDEX)]
    assert attrition == [5, 4, 3, 2, 1]


def test_age_turns_on_the_birthday(omop_store: OmopStore) -> None:
    insert(omop_store, [Patient("x", dt.date(2003, 6, 15))])
    entries, _ = run(omop_store, spec("min_age = 17"))
    assert entries == [("x", INDEX)]


def test_descendants_come_from_concept_ancestor(omop_store: OmopStore) -> None:
    insert(omop_store, [Patient("x", dt.date(1950, 1, 1))])
    parent = 4_000_000
    assert run(omop_store, spec(entry=parent, descendants=True))[0] == []
    with omop_store.begin() as conn:
        conn.execute(
            omop_store.table("concept_ancestor").insert(),
            {
                "ancestor_concept_id": parent,
                "descendant_concept_id": STRESS_TEST,
                "min_levels_of_separation": 1,
                "max_levels_of_separation": 1,
            },
        )
    assert run(omop_store, spec(entry=parent, descendants=True))[0] == [("x", INDEX)]
    assert run(omop_store, spec(entry=parent, descendants=False))[0] == []


@pytest.mark.parametrize("table", ["measurement", "condition_occurrence", "visit_occurrence"])
def test_entry_event_in_any_domain(omop_store: OmopStore, table: str) -> None:
    insert(omop_store, [Patient("x", dt.date(1950, 1, 1), entries=[])])
    concept, date = {
        "measurement": ("measurement_concept_id", "measurement_date"),
        "condition_occurrence": ("condition_concept_id", "condition_start_date"),
        "visit_occurrence": ("visit_concept_id", "visit_start_date"),
    }[table]
    with omop_store.begin() as conn:
        person = conn.execute(sa.select(omop_store.table("person").c.person_id)).scalar_one()
        row: dict[str, object] = {f"{table}_id": 1, "person_id": person, concept: 777, date: INDEX}
        for column in omop_store.table(table).c:  # fill the other NOT NULL columns
            if not column.nullable and column.name not in row:
                row[column.name] = 0 if column.name.endswith("_id") else INDEX
        conn.execute(omop_store.table(table).insert(), row)
    assert run(omop_store, spec(entry=777))[0] == [("x", INDEX)]


def test_a_known_concept_is_looked_up_in_its_domain_table_only(omop_store: OmopStore) -> None:
    insert(omop_store, [Patient("x", dt.date(1950, 1, 1))])  # the entry: a procedure row
    with omop_store.begin() as conn:
        conn.execute(
            omop_store.table("concept").insert(),
            {
                "concept_id": STRESS_TEST,
                "concept_name": "Cardiovascular stress testing",
                "domain_id": "Condition",  # deliberately not its real domain
                "vocabulary_id": "SNOMED",
                "concept_class_id": "Procedure",
                "concept_code": "76746007",
                "valid_start_date": dt.date(1970, 1, 1),
                "valid_end_date": dt.date(2099, 12, 31),
            },
        )
    assert run(omop_store, spec())[0] == []  # OMOP files a concept's events by its domain
