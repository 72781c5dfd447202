"""Consent fixtures: CDM stores holding six patients with a row in every table that names a person.

The PostgreSQL store lives in its own schema; teardown drops it, its consent schemas and every
role whose name starts with the schema's (the study read roles), so roles never leak across runs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from medfed.data.consent.model import sql_name
from medfed.data.omop.store import OmopStore, open_store, person_tables
from tests.store.conftest import POSTGRES_URL, _check_postgres_reachable

PATIENTS = ("p1", "p2", "p3", "p4", "p5", "p6")
"""``person_source_value`` of persons 1..6 (what the ETL keeps from a FHIR Patient id)."""

AT = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _value(column: sa.Column[object], row_id: int) -> object:
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return dt.datetime(2020, 1, 1, 12, 0)
    if isinstance(kind, sa.Date):
        return dt.date(2020, 1, 1)
    if isinstance(kind, sa.String | sa.Text):
        return "x"
    if isinstance(kind, sa.Numeric | sa.Float):
        return 1.0
    return row_id


def fill(store: OmopStore) -> None:
    """Persons 1..6 and, for each, one row in every other CDM table with a ``person_id``."""
    with store.begin() as conn:
        for name in person_tables():
            table = store.table(name)
            rows = []
            for pid in range(1, len(PATIENTS) + 1):
                row = {c.name: _value(c, pid) for c in table.columns if not c.nullable}
                row["person_id"] = pid
                if name == "person":
                    row["person_source_value"] = PATIENTS[pid - 1]
                rows.append(row)
            conn.execute(table.insert(), rows)


def drop_postgres(schema: str) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        roles = (
            conn.execute(
                sa.text("SELECT rolname FROM pg_roles WHERE starts_with(rolname, :prefix)"),
                {"prefix": schema},
            )
            .scalars()
            .all()
        )
        for name in (schema, consent_schema_name(schema), api_schema_name(schema)):
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        for role in roles:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
    engine.dispose()


def consent_schema_name(schema: str) -> str:
    return sql_name(schema, "consent")


def api_schema_name(schema: str) -> str:
    return sql_name(sql_name(schema, "consent"), "api")


def _open(kind: str, tmp_path: Path) -> OmopStore:
    if kind == "duckdb":
        return open_store(tmp_path / "omop.duckdb")
    _check_postgres_reachable()
    return open_store(POSTGRES_URL, schema=f"consent_test_{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OmopStore]:
    """A created CDM store with the six patients, on each database."""
    yield from _filled(request.param, tmp_path)


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[OmopStore]:
    yield from _filled("postgresql", tmp_path)


def _filled(kind: str, tmp_path: Path) -> Iterator[OmopStore]:
    opened = _open(kind, tmp_path)
    try:
        opened.create()
        fill(opened)
        yield opened
    finally:
        opened.close()
        if opened.schema is not None:
            drop_postgres(opened.schema)
