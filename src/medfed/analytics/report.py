"""Table 1 as text (Rich), CSV and JSON.

CSV and JSON share one long format, a record per number: ``section, feature, level, statistic,
site, column, value, low, high, note``. ``site`` is a site name or ``pooled``; ``note`` says
``hidden`` (suppressed at the site), ``lower bound`` (a pooled count some site hid part of),
``partial`` (pooled over fewer sites than hold rows) or is empty. ``low``/``high`` give a
quantile's interval (empty when unbounded).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medfed.analytics.histogram import Quantile
from medfed.analytics.moments import Moments
from medfed.analytics.table1 import (
    CategoricalBlock,
    ContinuousBlock,
    CountLine,
    PooledCount,
    Quartiles,
    Table1,
)

POOLED = "pooled"
FIELDS = ("section", "feature", "level", "statistic", "site", "column", "value", "low", "high")


@dataclass(frozen=True)
class Record:
    section: str
    feature: str
    level: str
    statistic: str
    site: str
    column: str
    value: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""


def records(table: Table1) -> Iterator[Record]:
    """Every number of the table, once, in display order."""
    yield from _count_records(table, "cohort", "", table.totals, "n")
    for step in table.attrition:
        for s, (left, removed) in zip(table.sites, step.per_site, strict=True):
            yield _rec("attrition", "", step.name, "persons", s, "overall", left)
            yield _rec("attrition", "", step.name, "removed", s, "overall", removed)
        yield _pooled_rec("attrition", "", step.name, "persons", "overall", step.pooled[0])
        yield _pooled_rec("attrition", "", step.name, "removed", "overall", step.pooled[1])
    for block in table.features:
        if isinstance(block, CategoricalBlock):
            for line in block.lines:
                yield from _count_records(table, "categorical", block.name, line, "n")
        else:
            yield from _continuous_records(table, block)


def _rec(
    section: str, feature: str, level: str, stat: str, site: str, column: str, value: int | None
) -> Record:
    return Record(
        section,
        feature,
        level,
        stat,
        site,
        column,
        value,
        note="" if value is not None else "hidden",
    )


def _pooled_rec(
    section: str, feature: str, level: str, stat: str, column: str, cell: PooledCount
) -> Record:
    note = "" if cell.exact else ("lower bound" if cell.value is not None else "hidden")
    return Record(section, feature, level, stat, POOLED, column, cell.value, note=note)


def _count_records(
    table: Table1, section: str, feature: str, line: CountLine, stat: str
) -> Iterator[Record]:
    for c, column in enumerate(table.columns):
        for s, cells in zip(table.sites, line.per_site, strict=True):
            yield _rec(section, feature, line.level, stat, s, column, cells[c])
        yield _pooled_rec(section, feature, line.level, stat, column, line.pooled[c])


def _continuous_records(table: Table1, block: ContinuousBlock) -> Iterator[Record]:
    yield from _count_records(table, "continuous", block.name, block.present, "n")
    yield from _count_records(table, "continuous", block.name, block.missing, "n")
    for c, column in enumerate(table.columns):
        for s, moments, quarts in zip(
            table.sites, block.site_moments, block.site_quartiles, strict=True
        ):
            yield from _stat_records(block.name, s, column, moments[c], quarts[c], "")
        pooled = block.pooled[c]
        yield from _stat_records(
            block.name,
            POOLED,
            column,
            pooled.moments,
            pooled.quartiles,
            "partial" if pooled.moments_partial or pooled.quartiles_partial else "",
        )


def _stat_records(
    feature: str, site: str, column: str, m: Moments | None, q: Quartiles | None, note: str
) -> Iterator[Record]:
    hidden = note or "hidden"
    for stat, value in (("mean", m.mean if m else None), ("std", m.std if m else None)):
        yield Record(
            "continuous", feature, "", stat, site, column, value, note=note if m else hidden
        )
    for stat, quant in (("q1", q and q.q1), ("median", q and q.median), ("q3", q and q.q3)):
        if quant:
            yield Record(
                "continuous", feature, "", stat, site, column, quant.estimate,
                _finite(quant.low), _finite(quant.high), note,
            )  # fmt: skip
        else:
            yield Record("continuous", feature, "", stat, site, column, None, note=hidden)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write(table: Table1, out_dir: Path) -> tuple[Path, Path]:
    """Write ``table1.csv`` and ``table1.json`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(records(table))
    csv_path, json_path = out_dir / "table1.csv", out_dir / "table1.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow((*FIELDS, "note"))
        for r in rows:
            writer.writerow((*(_csv(getattr(r, f)) for f in FIELDS), r.note))
    doc = {
        "sites": list(table.sites),
        "columns": list(table.columns),
        "k": list(table.k),
        "spec": table.spec_fingerprint,
        "withheld": [list(w) for w in table.withheld],
        "records": [{f: getattr(r, f) for f in (*FIELDS, "note")} for r in rows],
    }
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return csv_path, json_path


def _csv(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render(table: Table1, width: int = 160) -> str:
    """One Rich table per column (overall, then strata): rows are features, columns sites."""
    console = Console(
        file=io.StringIO(), width=width, record=True, force_terminal=False, color_system=None
    )
    for c, column in enumerate(table.columns):
        grid = Table(title=f"Table 1 — {column}", show_lines=False)
        grid.add_column("")
        for site in (*table.sites, POOLED):
            grid.add_column(site, justify="right")
        totals = [*(cells[c] for cells in table.totals.per_site), table.totals.pooled[c].value]
        grid.add_row("N", *(_count(v, None) for v in totals))
        if c == 0:
            for step in table.attrition:
                cells = [_count(left, None) for left, _ in step.per_site]
                grid.add_row(f"  {step.name}", *cells, _pooled_count(step.pooled[0], None))
        for block in table.features:
            _render_block(grid, table, block, c)
        console.print(grid)
    hidden = "at the site" if table.sites else "at a site or, pooled, at the coordinator"
    console.print(f"— hidden (suppressed {hidden}); ≥ lower bound; * partial (not every site)")
    return console.export_text()


def _render_block(
    grid: Table, table: Table1, block: CategoricalBlock | ContinuousBlock, c: int
) -> None:
    totals = [cells[c] for cells in table.totals.per_site]
    pooled_total = table.totals.pooled[c].value
    if isinstance(block, CategoricalBlock):
        grid.add_row(block.name)
        for line in block.lines:
            cells = [_count(cells[c], t) for cells, t in zip(line.per_site, totals, strict=True)]
            grid.add_row(f"  {line.level}", *cells, _pooled_count(line.pooled[c], pooled_total))
        return
    stat = block.pooled[c]
    mean_sd = [_mean_sd(m[c]) for m in block.site_moments]
    star = "*" if stat.moments_partial else ""
    grid.add_row(f"{block.name}, mean ± sd", *mean_sd, _mean_sd(stat.moments) + star)
    quart = [_quart(q[c]) for q in block.site_quartiles]
    star = "*" if stat.quartiles_partial else ""
    grid.add_row("  median [Q1, Q3]", *quart, _quart(stat.quartiles) + star)
    within = [_within(q[c]) for q in block.site_quartiles]
    grid.add_row("  median lies in", *within, _within(stat.quartiles))
    missing = [_count(cells[c], None) for cells in block.missing.per_site]
    grid.add_row("  missing", *missing, _pooled_count(block.missing.pooled[c], None))


def _count(value: int | None, total: int | None) -> str:
    if value is None:
        return "—"
    if total:
        return f"{value} ({100 * value / total:.1f}%)"
    return str(value)


def _pooled_count(cell: PooledCount, total: int | None) -> str:
    if cell.value is None:
        return "—"
    return _count(cell.value, total) if cell.exact else f"≥{cell.value}"


def _mean_sd(m: Moments | None) -> str:
    if m is None or m.n == 0:
        return "—"
    return f"{m.mean:.4g} ± {m.std:.3g}" if m.n > 1 else f"{m.mean:.4g}"


def _quart(q: Quartiles | None) -> str:
    if q is None:
        return "—"
    return f"{_q(q.median)} [{_q(q.q1)}, {_q(q.q3)}]"


def _within(q: Quartiles | None) -> str:
    """The interval the exact median is known to lie in: the stated error of the estimate."""
    if q is None:
        return "—"
    return f"[{q.median.low:.4g}, {q.median.high:.4g}]"


def _q(x: Quantile) -> str:
    return f"{x.estimate:.4g}"
