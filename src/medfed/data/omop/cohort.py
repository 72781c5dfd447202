"""The target cohort of a spec, as SQL over the CDM tables, with its attrition.

Everything here is SQLAlchemy Core over the schema-less CDM tables, so one query runs on the
embedded DuckDB store, on a PostgreSQL schema, and through the consent reader (whose engine maps
the same table names onto the views or row-level-secured tables a study may see). Nothing is
written: the consent reader's role is SELECT-only, so no temporary table is created either; the
cohort travels as a CTE into every feature query.

Age at index is OHDSI's year difference, corrected by the month and day of birth when the person
row has them (a person born later in the year than the index date is a year younger).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from medfed.data.omop.spec import CohortRule, CohortSpec, ConceptSet
from medfed.data.omop.store import cdm_metadata

MALE = 8507
FEMALE = 8532
"""OMOP's gender concepts (vocabulary "Gender")."""
_SEX_CONCEPT = {"male": MALE, "female": FEMALE}

EVENT_TABLES: tuple[tuple[str, str, str], ...] = (
    ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    ("measurement", "measurement_concept_id", "measurement_date"),
    ("observation", "observation_concept_id", "observation_date"),
    ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    ("visit_occurrence", "visit_concept_id", "visit_start_date"),
    ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    ("device_exposure", "device_concept_id", "device_exposure_start_date"),
)
"""(table, concept column, start date column) of every table a concept set is looked up in."""
_DOMAIN_TABLE = {
    "Condition": "condition_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
    "Procedure": "procedure_occurrence",
    "Visit": "visit_occurrence",
    "Drug": "drug_exposure",
    "Device": "device_exposure",
}


@dataclass(frozen=True)
class AttritionStep:
    """Persons (and cohort entries: a person enters more than once with ``occurrence = "all"``)
    left after a step. Counts stay at the node; the statistics layer suppresses small ones."""

    step: str
    persons: int
    entries: int


@dataclass(frozen=True)
class CohortEntry:
    """One row of the matrix to be: a person at an index date."""

    person_id: int
    index_date: dt.date
    age: int | None
    gender_concept_id: int | None
    person_source_value: str | None


@dataclass(frozen=True)
class Cohort:
    """The entries in matrix order (person source value, person id, index date) and the
    ``query`` that selects them (``person_id``, ``index_date``), for the feature queries."""

    entries: tuple[CohortEntry, ...]
    attrition: tuple[AttritionStep, ...]
    query: sa.Select[tuple[int, dt.date]]


def resolve_concepts(conn: sa.Connection, concept_set: ConceptSet) -> tuple[int, ...]:
    """The set's ids plus, when asked, their descendants in ``concept_ancestor``.

    Descendants come from the vocabulary the steward loaded; with an empty ``concept_ancestor``
    (as in Eunomia) the set is just its own ids.
    """
    ids = set(concept_set.concepts)
    if concept_set.descendants:
        ancestor = cdm_metadata().tables["concept_ancestor"]
        rows = conn.execute(
            sa.select(ancestor.c.descendant_concept_id).where(
                ancestor.c.ancestor_concept_id.in_(concept_set.concepts)
            )
        )
        ids.update(int(row[0]) for row in rows)
    return tuple(sorted(ids))


def concept_events(conn: sa.Connection, concept_set: ConceptSet) -> sa.Subquery:
    """:func:`events` of a concept set, looked up only in the tables of its concepts' domains."""
    ids = resolve_concepts(conn, concept_set)
    return events(ids, domain_tables(conn, ids))


def domain_tables(conn: sa.Connection, concept_ids: Sequence[int]) -> tuple[str, ...]:
    """The event tables OMOP puts these concepts in (a concept's ``domain_id`` names its table);
    every table when any concept is missing from ``concept`` or has another domain, so an event
    is never missed because the steward's vocabulary lacks a row."""
    concept = cdm_metadata().tables["concept"]
    query = sa.select(concept.c.concept_id, concept.c.domain_id).where(
        concept.c.concept_id.in_(list(concept_ids))
    )
    domains = {int(cid): str(domain) for cid, domain in conn.execute(query)}
    tables = {_DOMAIN_TABLE.get(domains.get(cid, "")) for cid in concept_ids}
    if None in tables:
        return tuple(name for name, _, _ in EVENT_TABLES)
    return tuple(name for name, _, _ in EVENT_TABLES if name in tables)


def events(concept_ids: Sequence[int], tables: Sequence[str] = ()) -> sa.Subquery:
    """Every event of these concepts in ``tables`` (default: all of :data:`EVENT_TABLES`):
    ``person_id``, ``event_date``,
    ``value`` (``value_as_number`` where the table has one), ``value_concept``, and ``source`` +
    ``event_id`` to break ties between events on one day in a stable order."""
    metadata_tables = cdm_metadata().tables
    searched = set(tables)
    parts = []
    for rank, (name, concept_column, date_column) in enumerate(EVENT_TABLES):
        if searched and name not in searched:
            continue
        table = metadata_tables[name]
        has_value = "value_as_number" in table.c
        parts.append(
            sa.select(
                table.c.person_id.label("person_id"),
                table.c[date_column].label("event_date"),
                table.c[concept_column].label("concept_id"),
                (
                    sa.cast(table.c.value_as_number, sa.Float)
                    if has_value
                    else sa.cast(sa.null(), sa.Float)
                ).label("value"),
                (
                    table.c.value_as_concept_id if has_value else sa.cast(sa.null(), sa.Integer)
                ).label("value_concept"),
                sa.literal(rank, sa.Integer).label("source"),
                table.c[f"{name}_id"].label("event_id"),
            ).where(table.c[concept_column].in_(list(concept_ids)))
        )
    return sa.union_all(*parts).subquery("events")


def build_cohort(conn: sa.Connection, spec: CohortSpec) -> Cohort:
    """Run the spec's cohort rule, counting who is left after each step."""
    rule = spec.cohort
    entry = _entry_events(concept_events(conn, spec.concept_set(rule.entry)), rule)
    person = cdm_metadata().tables["person"]
    age = age_at(entry.c.index_date, person)
    base = sa.select(
        entry.c.person_id,
        entry.c.index_date,
        age.label("age"),
        person.c.gender_concept_id,
        person.c.person_source_value,
    ).join_from(entry, person, person.c.person_id == entry.c.person_id)
    steps = [(_entry_step(rule), base)]
    for label, condition in _inclusion_rules(rule, age, person, entry.c.index_date):
        base = base.where(condition)
        steps.append((label, base))
    attrition = tuple(_count(conn, label, select) for label, select in steps)
    ordered = base.order_by(person.c.person_source_value, entry.c.person_id, entry.c.index_date)
    entries = tuple(
        CohortEntry(
            person_id=int(row.person_id),
            index_date=_as_date(row.index_date),
            age=None if row.age is None else int(row.age),
            gender_concept_id=None if row.gender_concept_id is None else int(row.gender_concept_id),
            person_source_value=row.person_source_value,
        )
        for row in conn.execute(ordered)
    )
    return Cohort(entries, attrition, _key_query(base))


def _key_query(base: sa.Select[Any]) -> sa.Select[tuple[int, dt.date]]:
    """The cohort's (person_id, index_date) pairs, as the filtered select reduced to its keys."""
    keys = base.subquery("cohort_rows")
    return sa.select(keys.c.person_id, keys.c.index_date)


def age_at(index_date: sa.ColumnElement[dt.date], person: sa.Table) -> sa.ColumnElement[int]:
    """Whole years between birth and ``index_date``, in SQL both databases run."""
    month = sa.extract("month", index_date)
    day = sa.extract("day", index_date)
    before_birthday = sa.case(
        (sa.or_(person.c.month_of_birth.is_(None), person.c.day_of_birth.is_(None)), 0),
        (month < person.c.month_of_birth, 1),
        (sa.and_(month == person.c.month_of_birth, day < person.c.day_of_birth), 1),
        else_=0,
    )
    return sa.cast(sa.extract("year", index_date) - person.c.year_of_birth - before_birthday,
                   sa.Integer)  # fmt: skip


def step_names(rule: CohortRule) -> tuple[str, ...]:
    """The names :func:`build_cohort` gives its attrition steps, from the rule alone: a secure
    statistics query lays out its attrition slots by them before any site reads data. The
    inclusion rules' SQL is built over placeholders and dropped, so the names have one source."""
    person = cdm_metadata().tables["person"]
    index = sa.literal(dt.date(2000, 1, 1), sa.Date)
    rules = _inclusion_rules(rule, sa.literal(0, sa.Integer), person, index)
    return (_entry_step(rule), *(label for label, _ in rules))


def _entry_step(rule: CohortRule) -> str:
    return f"entry event ({rule.occurrence} occurrence)"


def _entry_events(found: sa.Subquery, rule: CohortRule) -> sa.Subquery:
    """One row per (person, index date): the first entry event, or every distinct day of one."""
    if rule.occurrence == "first":
        select = sa.select(
            found.c.person_id, sa.func.min(found.c.event_date).label("index_date")
        ).group_by(found.c.person_id)
    else:
        select = sa.select(found.c.person_id, found.c.event_date.label("index_date")).distinct()
    return select.subquery("entry")


def _inclusion_rules(
    rule: CohortRule,
    age: sa.ColumnElement[int],
    person: sa.Table,
    index_date: sa.ColumnElement[dt.date],
) -> list[tuple[str, sa.ColumnElement[bool]]]:
    rules: list[tuple[str, sa.ColumnElement[bool]]] = []
    if rule.min_age is not None:
        rules.append((f"age at index >= {rule.min_age}", age >= rule.min_age))
    if rule.max_age is not None:
        rules.append((f"age at index <= {rule.max_age}", age <= rule.max_age))
    if rule.sex:
        concepts = [_SEX_CONCEPT[s] for s in rule.sex]
        rules.append((f"sex in {list(rule.sex)}", person.c.gender_concept_id.in_(concepts)))
    if rule.prior_observation_days is not None:
        period = cdm_metadata().tables["observation_period"]
        observed = sa.exists().where(
            period.c.person_id == person.c.person_id,
            period.c.observation_period_start_date <= index_date,
            period.c.observation_period_end_date >= index_date,
            index_date - period.c.observation_period_start_date >= rule.prior_observation_days,
        )
        rules.append((f"observed >= {rule.prior_observation_days} days before index", observed))
    return rules


def _count(conn: sa.Connection, label: str, select: sa.Select[Any]) -> AttritionStep:
    rows = select.subquery("step")
    persons, entries = conn.execute(
        sa.select(sa.func.count(sa.distinct(rows.c.person_id)), sa.func.count()).select_from(rows)
    ).one()
    return AttritionStep(label, int(persons), int(entries))


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
