"""The PostgreSQL boundary, probed as the node's own role: what it sees, what it cannot change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from medfed.data.consent import Consents, consented_reader
from medfed.data.consent.model import WITHHELD_TABLES, api_schema, consent_schema
from medfed.data.omop.store import OmopStore, person_tables
from medfed.errors import ConsentError
from tests.data.consent.conftest import AT

pytestmark = pytest.mark.postgres


def _enable(store: OmopStore, study: str = "s1") -> str:
    consents = Consents(store)
    consents.grant(study, ["p1", "p3", "p4"], "steward", AT)
    return consents.enable(study)


@contextmanager
def _as_role(store: OmopStore, role: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(store.engine.url.set(username=role), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _count(conn: sa.Connection, schema: str, table: str) -> int:
    return int(conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{table}"')).scalar_one())


def _refused(store: OmopStore, role: str, statement: str) -> str:
    with _as_role(store, role) as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(sa.text(statement))
    return str(caught.value.orig)


def test_the_study_role_sees_only_consented_persons_in_every_person_table(
    pg_store: OmopStore,
) -> None:
    role = _enable(pg_store)
    assert Consents(pg_store).enable("s1") == role  # enabling again changes nothing

    with _as_role(pg_store, role) as conn:
        for table in person_tables():
            ids = conn.execute(
                sa.text(f'SELECT DISTINCT person_id FROM "{pg_store.schema}"."{table}"')
            ).scalars()
            assert sorted(ids) == [1, 3, 4], table
        assert _count(conn, str(pg_store.schema), "concept") == 0  # readable, just empty


def test_the_study_role_cannot_read_or_write_consent_or_the_log(pg_store: OmopStore) -> None:
    role = _enable(pg_store)
    cs = consent_schema(pg_store)

    for table in ("consent", "consent_log", "study_role"):
        for statement in (
            f'SELECT * FROM "{cs}".{table}',
            f'DELETE FROM "{cs}".{table}',
            f"UPDATE \"{cs}\".{table} SET study_id = 's2'",
            f"INSERT INTO \"{cs}\".{table} (study_id) VALUES ('s1')",
        ):
            assert "permission denied" in _refused(pg_store, role, statement)


def test_the_study_role_cannot_change_the_study_it_reads_for(pg_store: OmopStore) -> None:
    role = _enable(pg_store)
    Consents(pg_store).grant("s2", ["p2", "p5", "p6"], "steward", AT)
    Consents(pg_store).enable("s2")
    cs, api, cdm = consent_schema(pg_store), api_schema(pg_store), str(pg_store.schema)

    with _as_role(pg_store, role) as conn:  # settings a client may change change nothing
        conn.execute(sa.text("SET medfed.study = 's2'"))
        conn.execute(sa.text("SET medfed.study_id = 's2'"))
        conn.execute(sa.text("RESET ROLE"))
        assert _count(conn, cdm, "person") == 3
        assert (
            conn.execute(sa.text(f'SELECT study_id FROM "{api}".consent_scope()')).scalar() == "s1"
        )
    for statement, expected in (
        ("SET ROLE root", "permission denied"),
        ("SET SESSION AUTHORIZATION root", "permission denied"),
        (f'SET ROLE "{pg_store.schema}_read_s2"', "permission denied"),
        (f'SELECT * FROM "{cs}".consented_person_ids()', "permission denied"),
        (f"SELECT * FROM \"{api}\".consent_scope('s2')", "does not exist"),
        ('ALTER TABLE "' + cdm + '".person DISABLE ROW LEVEL SECURITY', "must be owner"),
        (f'DROP POLICY medfed_consent ON "{cdm}".person', "must be owner"),
    ):
        assert expected in _refused(pg_store, role, statement), statement


def test_the_study_role_cannot_change_cdm_rows(pg_store: OmopStore) -> None:
    role = _enable(pg_store)
    cdm = pg_store.schema

    for statement in (
        f'INSERT INTO "{cdm}".person (person_id, gender_concept_id, year_of_birth,'
        " race_concept_id, ethnicity_concept_id) VALUES (99, 0, 1970, 0, 0)",
        f'UPDATE "{cdm}".condition_occurrence SET condition_concept_id = 1',
        f'DELETE FROM "{cdm}".measurement',
        f'TRUNCATE "{cdm}".observation',
    ):
        assert "permission denied" in _refused(pg_store, role, statement), statement
    for table in WITHHELD_TABLES:  # person data without a person_id column: not readable at all
        assert "permission denied" in _refused(pg_store, role, f'SELECT * FROM "{cdm}".{table}')


def test_the_reader_refuses_a_superuser_or_a_bypassrls_role(pg_store: OmopStore) -> None:
    _enable(pg_store)
    with pytest.raises(ConsentError, match="superuser or BYPASSRLS"):
        consented_reader(pg_store, "s1", role="root")

    bypass = f"{pg_store.schema}_bypass"
    with pg_store.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{bypass}" LOGIN NOSUPERUSER BYPASSRLS'))
    with pytest.raises(ConsentError, match=bypass):
        consented_reader(pg_store, "s1", role=bypass)


def test_the_reader_refuses_a_person_table_without_row_level_security(
    pg_store: OmopStore,
) -> None:
    _enable(pg_store)
    with pg_store.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{pg_store.schema}".death NO FORCE ROW LEVEL SECURITY'))

    with pytest.raises(ConsentError, match="row-level security is off on death"):
        consented_reader(pg_store, "s1")


def test_the_reader_refuses_a_role_scoped_to_another_study(pg_store: OmopStore) -> None:
    role = _enable(pg_store, "s1")
    Consents(pg_store).enable("s2")

    with pytest.raises(ConsentError, match="reads for study 's1', not 's2'"):
        consented_reader(pg_store, "s2", role=role)
    with pytest.raises(ConsentError, match="one role per study"):
        Consents(pg_store).enable("s2", role=role)


def test_a_revocation_shows_in_the_next_read_not_the_current_one(pg_store: OmopStore) -> None:
    _enable(pg_store)
    person = pg_store.table("person")
    current = consented_reader(pg_store, "s1")
    assert (current.consented_n, current.watermark) == (3, 3)

    Consents(pg_store).revoke("s1", ["p3"], "steward", AT)

    count = sa.select(sa.func.count()).select_from(person)
    assert current.connection.execute(count).scalar_one() == 3  # the round's snapshot holds
    current.close()
    with consented_reader(pg_store, "s1") as nxt:
        assert (nxt.consented_n, nxt.watermark) == (2, 4)
        assert nxt.connection.execute(count).scalar_one() == 2
        with nxt.engine.connect() as fresh:
            assert fresh.execute(count).scalar_one() == 2


@pytest.mark.parametrize("statement", ["UPDATE {log} SET study_id = 's2'", "DELETE FROM {log}",
                                       "TRUNCATE {log}"])  # fmt: skip
def test_the_consent_log_is_append_only_even_for_the_steward(
    pg_store: OmopStore, statement: str
) -> None:
    _enable(pg_store)
    log = f'"{consent_schema(pg_store)}".consent_log'

    with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg_store.begin() as conn:
        conn.execute(sa.text(statement.format(log=log)))
    assert Consents(pg_store).show("s1").watermark == 3


def test_planner_statistics_do_not_leak_unconsented_values(pg_store: OmopStore) -> None:
    role = _enable(pg_store)
    with pg_store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'ANALYZE "{pg_store.schema}".person'))

    query = sa.text("SELECT count(*) FROM pg_stats WHERE schemaname = :s AND tablename = 'person'")
    with pg_store.engine.connect() as conn:
        assert conn.execute(query, {"s": pg_store.schema}).scalar_one() > 0
    with _as_role(pg_store, role) as conn:
        assert conn.execute(query, {"s": pg_store.schema}).scalar_one() == 0


def test_a_study_never_enabled_or_an_unreadable_password_file_is_refused(
    pg_store: OmopStore, tmp_path: Path
) -> None:
    with pytest.raises(ConsentError, match="0 read roles"):
        consented_reader(pg_store, "s1")  # no consent schema yet
    role = _enable(pg_store)
    with pytest.raises(ConsentError, match="0 read roles"):
        consented_reader(pg_store, "s9")
    with pytest.raises(ConsentError, match="password file"):
        consented_reader(pg_store, "s1", role=role, password_file=tmp_path / "missing")
