"""What consent costs a round: counting 1M condition rows with and without the consent filter.

A CDM with ``--persons`` persons (default 100k) and ``--rows`` condition_occurrence rows (default
1M, spread evenly), ``--consented`` of the persons (default 90 %) consenting to study ``bench``.
Median of ``--repeat`` (default 5) ``SELECT count(*)`` on condition_occurrence:

* PostgreSQL, as the study's role through row-level security (``consented_reader``), against the
  same count as the steward (no filter), and the steward's hand-written consented count;
* DuckDB, through the study's views, against the base table.

Also the time to open a reader (session checks, watermark, consented N). Data is filled with
``generate_series`` in SQL; the PostgreSQL schema and role are dropped at the end.

    python bench/consent_rls.py [--persons 100000] [--rows 1000000] [--consented 0.9] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import sqlalchemy as sa
from machine import machine  # bench/machine.py (bench/ is on sys.path)

from medfed.data.consent import Consents, consented_reader
from medfed.data.consent.model import api_schema, consent_schema, consent_tables
from medfed.data.omop.store import OmopStore, open_store

POSTGRES_URL = os.environ.get(
    "MEDFED_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
STUDY = "bench"


def fill(store: OmopStore, persons: int, rows: int, consented: float) -> None:
    """Persons, conditions and consent rows, in bulk SQL (the same statements on both databases)."""
    cdm, cs = store.schema or "main", consent_schema(store)
    skip = round(1 / (1 - consented)) if consented < 1 else 0  # every skip-th person declines
    declines = f"g % {skip} <> 0" if skip else "true"
    statements = [
        f"""INSERT INTO "{cdm}".person (person_id, gender_concept_id, year_of_birth,
              race_concept_id, ethnicity_concept_id, person_source_value)
            SELECT g, 8507, 1950 + g % 50, 0, 0, 'p' || g
            FROM generate_series(1, {persons}) t(g)""",
        f"""INSERT INTO "{cdm}".condition_occurrence (condition_occurrence_id, person_id,
              condition_concept_id, condition_start_date, condition_type_concept_id)
            SELECT g, 1 + g % {persons}, 320128, DATE '2020-01-01', 32817
            FROM generate_series(1, {rows}) t(g)""",
        f"""INSERT INTO "{cs}".consent_log (seq, study_id, person_id, person_source_value,
              decision, decided_at, recorded_by, source)
            SELECT row_number() OVER (ORDER BY g), '{STUDY}', g, 'p' || g, 'granted',
              TIMESTAMPTZ '2026-12-01 00:00:00+00', 'bench', 'bench'
            FROM generate_series(1, {persons}) t(g) WHERE {declines}""",
        f"""INSERT INTO "{cs}".consent (study_id, person_id, person_source_value, decision,
              granted_at, recorded_by, source, log_seq)
            SELECT study_id, person_id, person_source_value, decision, decided_at, recorded_by,
              source, seq FROM "{cs}".consent_log""",
    ]
    with store.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def median_s(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    run()  # warm the cache once
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _count(conn: sa.Connection, statement: sa.Select[tuple[int]]) -> Callable[[], object]:
    return lambda: conn.execute(statement).scalar_one()


def measure(store: OmopStore, repeat: int) -> list[tuple[str, float, object]]:
    condition = store.table("condition_occurrence")
    count = sa.select(sa.func.count()).select_from(condition)
    consent = consent_tables(consent_schema(store))[0]
    granted = sa.select(consent.c.person_id).where(
        consent.c.study_id == STUDY, consent.c.decision == "granted"
    )
    kind = "node, through the views" if store.embedded else "node role, through RLS"
    results: list[tuple[str, float, object]] = []
    opened = median_s(lambda: consented_reader(store, STUDY).close(), repeat)[0]
    with consented_reader(store, STUDY) as reader:
        results.append((f"{kind}", *median_s(
            _count(reader.connection, count), repeat)))  # fmt: skip
    with store.engine.connect() as conn:
        results.append(("steward, no filter", *median_s(_count(conn, count), repeat)))
        hand = count.where(condition.c.person_id.in_(granted))
        results.append(("steward, hand-written consent filter", *median_s(
            _count(conn, hand), repeat)))  # fmt: skip
    results.append(("open a reader (checks, watermark, N)", opened, ""))
    return results


def run_postgres(args: argparse.Namespace) -> list[tuple[str, float, object]]:
    store = open_store(POSTGRES_URL, schema=f"bench_consent_{uuid.uuid4().hex[:8]}")
    role = ""
    try:
        store.create()
        Consents(store).create()
        fill(store, args.persons, args.rows, args.consented)
        role = Consents(store).enable(STUDY)
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'ANALYZE "{store.schema}".condition_occurrence'))
        return measure(store, args.repeat)
    finally:
        store.close()
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as conn:
            for schema in (store.schema, consent_schema(store), api_schema(store)):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            if role:
                conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
                conn.execute(sa.text(f'DROP ROLE "{role}"'))
        engine.dispose()


def run_duckdb(args: argparse.Namespace) -> list[tuple[str, float, object]]:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Path(folder) / "omop.duckdb")
        try:
            store.create()
            Consents(store).create()
            fill(store, args.persons, args.rows, args.consented)
            Consents(store).enable(STUDY)
            return measure(store, args.repeat)
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--consented", type=float, default=0.9)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    engine = sa.create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        pg_version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    engine.dispose()
    print(f"machine: {machine()} · PostgreSQL {pg_version} · "
          f"DuckDB {duckdb.__version__} (2 threads)")  # fmt: skip
    print(f"{args.persons:,} persons, {args.rows:,} condition_occurrence rows, "
          f"{args.consented:.0%} consenting; median of {args.repeat}\n")  # fmt: skip
    print("| database | query | median s | count |")
    print("|---|---|---:|---:|")
    for database, run in (("PostgreSQL", run_postgres), ("DuckDB", run_duckdb)):
        for label, seconds, value in run(args):
            print(f"| {database} | {label} | {seconds:.3f} | {value} |", flush=True)


if __name__ == "__main__":
    main()
