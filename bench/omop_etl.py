"""FHIR R4 -> OMOP ETL throughput on the 16 Synthea bundles, into DuckDB and into PostgreSQL.

Each run loads the whole folder (16 patient bundles + Synthea's hospital and practitioner
bundles) into a fresh store that already holds the built-in vocabulary; the time covers reading,
parsing, concept lookups, mapping and writing, one transaction per bundle. A second row per
store loads the same folder again into the now-full store (every patient replaced in place).
Median of --repeats runs, printed as a Markdown table naming the machine.

    .venv/bin/python bench/omop_etl.py [--postgres-url URL] [--repeats 3] [--validate]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from machine import machine  # bench/machine.py (bench/ is on sys.path)

from medfed.data.fhir import LoadReport, load_bundles
from medfed.data.omop.store import OmopStore, open_store
from medfed.data.omop.vocabulary import install_builtin_vocabulary

SYNTHEA = Path(__file__).resolve().parents[1] / "tests/data/fhir/synthea_r4"
DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/test"


def fresh_store(kind: str, work: Path, pg_url: str) -> OmopStore:
    if kind == "duckdb":
        store = open_store(work / f"{uuid.uuid4().hex[:8]}.duckdb")
    else:
        store = open_store(pg_url, schema=f"bench_etl_{uuid.uuid4().hex[:8]}")
    store.create()
    install_builtin_vocabulary(store)
    return store


def drop(store: OmopStore, pg_url: str) -> None:
    store.close()
    if store.schema:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{store.schema}" CASCADE'))
        engine.dispose()


def timed_load(store: OmopStore, validate: bool) -> tuple[float, LoadReport]:
    start = time.perf_counter()
    report = load_bundles(store, [SYNTHEA], validate=validate)
    elapsed = time.perf_counter() - start
    if report.refused:
        raise SystemExit(f"the ETL refused bundles: {report.refused[:3]}")
    return elapsed, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--validate", action="store_true", help="validate with the R4B models")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("duckdb", "postgresql"):
            first: list[float] = []
            again: list[float] = []
            report: LoadReport | None = None
            for _ in range(args.repeats):
                store = fresh_store(kind, Path(tmp), args.postgres_url)
                try:
                    seconds, report = timed_load(store, args.validate)
                    first.append(seconds)
                    again.append(timed_load(store, args.validate)[0])
                finally:
                    drop(store, args.postgres_url)
            assert report is not None
            for label, times in (("fresh store", first), ("reload (replace)", again)):
                median = statistics.median(times)
                rows.append(
                    (
                        kind,
                        label,
                        median,
                        sum(report.resources.values()) / median,
                        report.mapped_resources / median,
                        report.bytes / median / 1e6,
                        sum(report.rows.values()),
                    )
                )

    print(
        f"\nFHIR -> OMOP ETL, 18 Synthea R4 bundles ({report.bytes / 1e6:.1f} MB, "
        f"{sum(report.resources.values())} resources, {report.mapped_resources} of mapped "
        f"types){', validated (R4B)' if args.validate else ''}; median of {args.repeats}"
    )
    print(f"machine: {machine()}\n")
    print("| store | load | seconds | resources/s | mapped resources/s | MB/s | CDM rows |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, label, seconds, per_s, mapped_s, mb_s, cdm_rows in rows:
        print(
            f"| {kind} | {label} | {seconds:.2f} | {per_s:,.0f} | {mapped_s:,.0f} | "
            f"{mb_s:.2f} | {cdm_rows:,} |"
        )


if __name__ == "__main__":
    main()
