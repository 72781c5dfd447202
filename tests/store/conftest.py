"""Fixtures for store tests: every StateStore test runs on SQLite and on PostgreSQL.

PostgreSQL is never skipped: CI has it at 127.0.0.1:5432 (trust auth, database ``test``). Point
``MEDFED_TEST_POSTGRES_URL`` elsewhere if your server lives elsewhere. Each test gets its own
schema, dropped at teardown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from medfed.store import StateStore

POSTGRES_URL = os.environ.get(
    "MEDFED_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


def _check_postgres_reachable() -> None:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc}). Start it, or set "
            "MEDFED_TEST_POSTGRES_URL to a server where this user may create schemas.",
            pytrace=False,
        )
    finally:
        engine.dispose()


def _drop_schema(schema: str) -> None:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], StateStore]]:
    """Opens a new StateStore on the same database each call (for reopen tests); closes them all."""
    opened: list[StateStore] = []
    schema: str | None = None
    if request.param == "postgresql":
        _check_postgres_reachable()
        schema = f"medfed_test_{uuid.uuid4().hex[:16]}"

    def _open() -> StateStore:
        if schema is None:
            store = StateStore.sqlite(tmp_path / "state.db")
        else:
            store = StateStore(POSTGRES_URL, schema=schema)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
    if schema is not None:
        _drop_schema(schema)


@pytest.fixture
def store(open_store: Callable[[], StateStore]) -> StateStore:
    return open_store()
