"""Feature extraction time for the heart cohort, per hospital and in total, on both OMOP stores.

Each UCI Heart Disease hospital is written as FHIR bundles (medfed.demo.ehr), loaded through the
ETL into its own store (an embedded DuckDB file; a PostgreSQL schema), and the heart spec's
matrix is built from it without the cache (cohort, 10 feature queries, label, split) -- what a
node does when its data or consent changed since the last round -- and read back from the cache
(store fingerprint + file read) -- what a round with nothing changed costs. Median of
--repeats runs; printed as a Markdown table naming the machine.

    .venv/bin/python bench/omop_features.py [--postgres-url URL] [--repeats 3]
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

from medfed.data.fhir import load_bundles
from medfed.data.heart_disease import heart_disease_centres
from medfed.data.omop.features import extract
from medfed.data.omop.spec import load_spec
from medfed.data.omop.store import OmopStore, open_store
from medfed.data.omop.vocabulary import install_builtin_vocabulary, load_vocabulary
from medfed.demo.ehr.bundles import HOSPITAL_FILES, write_heart_bundles
from medfed.demo.ehr.codes import HEART_SPEC, HEART_VOCABULARY

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/test"


def loaded_store(kind: str, site: str, paths: list[Path], work: Path, pg_url: str) -> OmopStore:
    if kind == "duckdb":
        store = open_store(work / f"{site}.duckdb")
    else:
        store = open_store(pg_url, schema=f"bench_omop_{site}_{uuid.uuid4().hex[:6]}")
    store.create()
    install_builtin_vocabulary(store)
    load_vocabulary(store, HEART_VOCABULARY)
    report = load_bundles(store, paths)
    if report.refused:
        raise SystemExit(f"{site}: the ETL refused bundles: {report.refused[:3]}")
    return store


def drop(store: OmopStore, pg_url: str) -> None:
    store.close()
    if store.schema is not None:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE'))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = load_spec(HEART_SPEC)
    expected = heart_disease_centres()
    times: dict[tuple[str, str], float] = {}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundles = write_heart_bundles(work / "fhir")
        for kind in ("duckdb", "postgresql"):
            for site in HOSPITAL_FILES:
                store = loaded_store(kind, site, bundles[site], work, args.postgres_url)
                try:
                    runs = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        data = extract(store.engine, spec).dataset
                        runs.append(time.perf_counter() - start)
                    if data.rows != expected[site].rows:
                        raise SystemExit(f"{site} on {kind}: {data.rows} rows, CSV path has "
                                         f"{expected[site].rows}")  # fmt: skip
                    times[(kind, site)] = statistics.median(runs)
                    cache = work / f"cache-{kind}-{site}"
                    extract(store.engine, spec, cache_dir=cache)  # fills it
                    hits = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        if not extract(store.engine, spec, cache_dir=cache).from_cache:
                            raise SystemExit(f"{site} on {kind}: the cache missed")
                        hits.append(time.perf_counter() - start)
                    times[(f"{kind} cached", site)] = statistics.median(hits)
                    rows[site] = data.rows
                finally:
                    drop(store, args.postgres_url)
    print(f"Heart cohort feature extraction, median of {args.repeats}; {machine()}\n")
    kinds = ("duckdb", "postgresql", "duckdb cached", "postgresql cached")
    print(
        "| hospital | patients (FHIR) | matrix rows | DuckDB (s) | PostgreSQL (s) "
        "| DuckDB, cache hit (s) | PostgreSQL, cache hit (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for site in HOSPITAL_FILES:
        cells = " | ".join(f"{times[(k, site)]:.3f}" for k in kinds)
        print(f"| {site} | {len(bundles[site])} | {rows[site]} | {cells} |")
    total = " | ".join(f"{sum(times[(k, s)] for s in HOSPITAL_FILES):.3f}" for k in kinds)
    patients = sum(len(b) for b in bundles.values())
    print(f"| **total** | {patients} | {sum(rows.values())} | {total} |")


if __name__ == "__main__":
    main()
