"""OMOP stores for tests: every store test runs on the embedded DuckDB file and on PostgreSQL.

PostgreSQL is never skipped (CI has it at 127.0.0.1:5432); each test gets its own schema, dropped
at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from medfed.data.omop.store import OmopStore, open_store
from tests.store.conftest import POSTGRES_URL, _check_postgres_reachable


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def omop_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OmopStore]:
    """A new, created OMOP CDM store."""
    if request.param == "duckdb":
        store = open_store(tmp_path / "omop.duckdb")
    else:
        _check_postgres_reachable()
        store = open_store(POSTGRES_URL, schema=f"omop_test_{uuid.uuid4().hex[:12]}")
    store.create()
    yield store
    store.close()
    if store.schema is not None:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE'))
        engine.dispose()
