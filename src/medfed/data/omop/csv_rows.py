"""Typed rows from OMOP CSV files: Athena's vocabulary download and CDM exports such as Eunomia.

The two dialects differ, and one reader takes both:

- Athena ships tab-separated files with no quoting at all (a concept name may hold a ``"``) and
  dates as ``YYYYMMDD``.
- CDM exports (Eunomia, ``write.csv``) are comma-separated with quoted strings and ISO dates.

The header decides: a tab in it means Athena's layout. Column names are matched case-blind;
columns the CDM table lacks are ignored, and a missing NOT NULL column refuses the file by name.
Rows are yielded one at a time, so a 5 GB CONCEPT_RELATIONSHIP.csv never sits in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from medfed.errors import EtlError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # concept synonyms and notes can be long

Converter = Callable[[str], Any]


def read_rows(lines: Iterable[str], table: sa.Table, source: str) -> Iterator[dict[str, Any]]:
    """Yield ``table`` rows from CSV ``lines`` (header first); ``source`` names the file."""
    lines = iter(lines)
    header_line = next(lines, "")
    if not header_line.strip():
        return
    athena = "\t" in header_line
    header = _parse_line(header_line, athena)
    names = [name.strip().lower() for name in header]
    wanted = [(i, table.c[name]) for i, name in enumerate(names) if name in table.c]
    missing = [c.name for c in table.columns if not c.nullable and c.name not in names]
    if missing:
        raise EtlError(f"{source}: no column(s) {', '.join(missing)} for table {table.name}")
    converters = [(i, column.name, _converter(column)) for i, column in wanted]
    reader = csv.reader(lines, **_dialect(athena))
    for number, fields in enumerate(reader, start=2):
        if not fields:
            continue
        try:
            yield {name: convert(fields[i]) for i, name, convert in converters}
        except (ValueError, IndexError) as exc:
            raise EtlError(f"{source} line {number}: {exc}") from exc


def _parse_line(line: str, athena: bool) -> list[str]:
    return next(csv.reader([line], **_dialect(athena)))


def _dialect(athena: bool) -> dict[str, Any]:
    if athena:
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ","}


def _converter(column: sa.Column[Any]) -> Converter:
    kind = column.type
    if isinstance(kind, sa.Integer):
        base: Converter = _integer
    elif isinstance(kind, sa.Numeric | sa.Float):
        base = float
    elif isinstance(kind, sa.DateTime):
        base = _datetime
    elif isinstance(kind, sa.Date):
        base = _date
    else:
        length = getattr(kind, "length", None)
        base = (lambda text: text[:length]) if length else str
    nullable = column.nullable

    def convert(text: str) -> Any:
        if text in {"", "\\N"}:  # Athena and PostgreSQL dumps write NULL as \N
            if nullable:
                return None
            if isinstance(kind, sa.String):
                return ""
            raise ValueError(f"{column.name} is empty but may not be NULL")
        return base(text)

    return convert


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(float(text))  # R writes some integer columns as 1.0


def _date(text: str) -> dt.date:
    if len(text) == 8 and text.isdigit():  # Athena: YYYYMMDD
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return dt.date.fromisoformat(text[:10])


def _datetime(text: str) -> dt.datetime:
    if len(text) == 8 and text.isdigit():
        return dt.datetime.combine(_date(text), dt.time())
    return dt.datetime.fromisoformat(text)
