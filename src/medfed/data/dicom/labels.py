"""The labels file a data steward registers next to a DICOM folder.

A UTF-8 CSV with a header: a key column -- ``file`` (a path relative to the folder) or
``sop_instance_uid`` (the image's SOP Instance UID) -- a 0/1 label column, and optionally a
split column holding ``train`` or ``test``. Every problem names the file, row and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medfed.data.csv_source import open_csv
from medfed.errors import DatasetError

KeyKind = Literal["file", "sop_instance_uid"]
KEY_COLUMNS: tuple[KeyKind, ...] = ("file", "sop_instance_uid")


@dataclass(frozen=True)
class LabelRow:
    key: str
    label: float
    split: str | None


@dataclass(frozen=True)
class Labels:
    key_kind: KeyKind
    rows: tuple[LabelRow, ...]


def parse_labels(data: bytes, *, source: str, label: str, split_column: str | None) -> Labels:
    reader, header = open_csv(data, source)
    keys = [k for k in KEY_COLUMNS if k in header]
    if len(keys) != 1:
        raise DatasetError(
            f"{source}: needs exactly one key column, 'file' or 'sop_instance_uid' "
            f"(header: {header})"
        )
    for column in (label, split_column):
        if column is not None and column not in header:
            raise DatasetError(f"{source}: no column {column!r} (header: {header})")
    at = {name: i for i, name in enumerate(header)}
    rows: list[LabelRow] = []
    seen: set[str] = set()
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        where = f"{source} row {number}"
        if len(cells) != len(header):
            raise DatasetError(f"{where}: {len(cells)} cells, header has {len(header)}")
        key = cells[at[keys[0]]].strip()
        if not key or key in seen:
            raise DatasetError(f"{where}: {keys[0]} {key!r} is empty or repeated")
        seen.add(key)
        rows.append(
            LabelRow(
                key, _label(cells[at[label]], where, label), _split(cells, at, split_column, where)
            )
        )
    if not rows:
        raise DatasetError(f"{source}: no labelled images")
    return Labels(key_kind=keys[0], rows=tuple(rows))


def _label(cell: str, where: str, column: str) -> float:
    value = cell.strip()
    if value not in ("0", "1"):
        raise DatasetError(f"{where}, column {column!r}: label must be 0 or 1, got {value!r}")
    return float(value)


def _split(cells: list[str], at: dict[str, int], column: str | None, where: str) -> str | None:
    if column is None:
        return None
    value = cells[at[column]].strip().lower()
    if value not in ("train", "test"):
        raise DatasetError(
            f"{where}, column {column!r}: split must be train or test, not {value!r}"
        )
    return value
