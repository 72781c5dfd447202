"""Federated Table 1: cost of a site summary, of combining, of suppression, and what it hides.

Per row count n (one site, 12 features: 4 continuous with 25 fine bins, 6 binary, 2 categorical
with 6 levels, stratified by a binary outcome), the median wall time of ``summarize``. Then
``combine`` over S sites of 2,000 persons each; ``protect_grid`` alone by table size (levels x
strata, 30 % of cells small); and the information cost: the share of count cells hidden at
k = 3, 5, 10 on Heart-Disease-sized sites (n = 100 .. 900) and the width of the pooled median's
interval against a single site's.

    python bench/stats_disclosure.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from machine import machine  # bench/machine.py (bench/ is on sys.path)

from medfed.analytics.combine import combine
from medfed.analytics.disclosure import protect_grid
from medfed.analytics.site import summarize
from medfed.analytics.spec import Column, ColumnKind, StatsSpec
from medfed.analytics.summary import CategoricalSummary
from medfed.analytics.table1 import ContinuousBlock

EDGES = tuple(float(e) for e in np.linspace(0, 100, 26))
COLUMNS = (
    *(Column(f"lab{i}", ColumnKind.CONTINUOUS) for i in range(4)),
    *(Column(f"flag{i}", ColumnKind.BINARY) for i in range(6)),
    *(Column(f"cat{i}", ColumnKind.CATEGORICAL, tuple("abcdef")) for i in range(2)),
    Column("outcome", ColumnKind.BINARY),
)
SPEC = StatsSpec(bins={f"lab{i}": EDGES for i in range(4)}, group="outcome")


def cohort(rng: np.random.Generator, n: int) -> np.ndarray:
    labs = [rng.normal(50 + 5 * i, 12, n) for i in range(4)]
    flags = [rng.random(n) < p for p in (0.5, 0.3, 0.1, 0.05, 0.02, 0.01)]
    cats = [rng.choice(6, n, p=[0.4, 0.3, 0.15, 0.1, 0.04, 0.01]) for _ in range(2)]
    outcome = rng.random(n) < 0.45
    return np.column_stack([*labs, *flags, *cats, outcome]).astype(np.float64)


def timed(fn: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def hidden_share(k: int, rng: np.random.Generator) -> float:
    hidden = total = 0
    for n in (100, 300, 900):
        summary = summarize(cohort(rng, n), COLUMNS, SPEC, k, site="s")
        for f in summary.features:
            if isinstance(f, CategoricalSummary):
                cells = [c for row in f.rows[:-1] for c in row.cells]
                hidden += sum(c is None for c in cells)
                total += len(cells)
    return hidden / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    rng = np.random.default_rng(0)
    started = time.perf_counter()

    print("| persons at the site | summarize s (median) |\n|---:|---:|")
    for n in (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000, 1_000_000):
        x = cohort(rng, n)
        print(
            f"| {n:,} | {timed(lambda x=x: summarize(x, COLUMNS, SPEC, 5, site='s'), reps):.3f} |"
        )

    print("\n| sites | combine s (median) |\n|---:|---:|")
    for sites in (4, 16, 64):
        parts = [summarize(cohort(rng, 2000), COLUMNS, SPEC, 5, site=f"s{i}") for i in range(sites)]
        print(f"| {sites} | {timed(lambda p=parts: combine(p, SPEC), reps):.4f} |")

    print("\n| table (levels x strata) | protect_grid s | cells hidden |\n|---|---:|---:|")
    for levels, strata in ((6, 2), (20, 3), (40, 4), (80, 4)):
        small = rng.random((levels, strata)) < 0.3
        counts = np.where(
            small, rng.integers(1, 5, (levels, strata)), rng.integers(5, 100, (levels, strata))
        )
        grid = protect_grid(counts, 5)
        hidden = sum(c is None for row in grid.cells for c in row)
        cells = sum(len(row) for row in grid.cells)
        elapsed = timed(lambda c=counts: protect_grid(c, 5), reps)
        print(f"| {levels} x {strata} | {elapsed:.3f} | {hidden}/{cells} |")

    print("\n| k | categorical cells hidden (sites of 100, 300, 900) |\n|---:|---:|")
    for k in (3, 5, 10):
        print(f"| {k} | {100 * hidden_share(k, np.random.default_rng(1)):.1f} % |")

    summaries = [summarize(cohort(rng, n), COLUMNS, SPEC, 5, site=f"h{n}") for n in (100, 300, 900)]
    table = combine(summaries, SPEC)
    lab = next(b for b in table.features if isinstance(b, ContinuousBlock))
    print("\n| lab0 median | site 100 | site 300 | site 900 | pooled |\n|---|---:|---:|---:|---:|")
    widths = [
        q[0].median.high - q[0].median.low if q[0] else float("nan") for q in lab.site_quartiles
    ]
    pooled = lab.pooled[0].quartiles
    pooled_width = pooled.median.high - pooled.median.low if pooled else float("nan")
    print("| interval width | " + " | ".join(f"{w:g}" for w in [*widths, pooled_width]) + " |")

    print(f"\nmachine: {machine()} · wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
