"""CSV connector: a hospital's export, checked against the schema the data steward declared.

A row that does not fit the schema is refused with the file, row and column named, rather than
silently coerced: a node that trains on a mis-parsed column would poison the federation without
anyone at the hospital ever seeing an error.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError

if TYPE_CHECKING:
    from _csv import Reader

SPLIT_VALUES = ("train", "test")


def load_csv(
    path: Path,
    *,
    features: Sequence[str] | None,
    label: str,
    split_column: str | None = None,
    test_fraction: float = 0.34,
    seed: int = 43,
) -> TabularDataset:
    """Read ``path`` (UTF-8, header row) into a split ``TabularDataset``.

    ``features=None`` takes every column except the label and split columns, in file order.
    Without a split column the rows are split with a stratified, seeded ``train_test_split``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_csv(
        data,
        source=str(path),
        features=features,
        label=label,
        split_column=split_column,
        test_fraction=test_fraction,
        seed=seed,
    )


def parse_csv(
    data: bytes,
    *,
    source: str,
    features: Sequence[str] | None,
    label: str,
    split_column: str | None = None,
    test_fraction: float = 0.34,
    seed: int = 43,
) -> TabularDataset:
    """``load_csv`` on bytes already in memory (so a caller can hash and parse the same bytes)."""
    reader, header = open_csv(data, source)
    wanted = _resolve_columns(source, header, features, label, split_column)
    x, y, splits = _read_rows(reader, source, header, wanted, label, split_column)
    if split_column is None:
        train = random_split(source, y, test_fraction, seed)
    else:
        train = np.array([s == "train" for s in splits], dtype=bool)
    for name, mask in (("train", train), ("test", ~train)):
        if not bool(mask.any()):
            raise DatasetError(f"{source}: the {name} split is empty")
    return TabularDataset(
        features=tuple(wanted),
        label=label,
        x_train=x[train],
        y_train=y[train],
        x_test=x[~train],
        y_test=y[~train],
    )


def open_csv(data: bytes, source: str) -> tuple[Reader, list[str]]:
    """A reader over UTF-8 CSV bytes (a BOM allowed) and its header row, names stripped."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    return reader, [name.strip() for name in next(reader, [])]


def _resolve_columns(
    source: str,
    header: list[str],
    features: Sequence[str] | None,
    label: str,
    split_column: str | None,
) -> list[str]:
    if not header or header == [""]:
        raise DatasetError(f"{source}: the file is empty (a header row is required)")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DatasetError(f"{source} row 1: column names repeated: {repeated}")
    special = {label} | ({split_column} if split_column else set())
    wanted = [c for c in header if c not in special] if features is None else list(features)
    if label in wanted or (split_column is not None and split_column in wanted):
        raise DatasetError(f"{source}: the label or split column is also listed as a feature")
    if not wanted:
        raise DatasetError(f"{source}: no feature columns")
    missing = [c for c in [*wanted, *sorted(special)] if c not in header]
    if missing:
        raise DatasetError(f"{source} row 1: missing columns {missing}; the header has {header}")
    return wanted


def _read_rows(
    reader: Reader,
    source: str,
    header: list[str],
    wanted: list[str],
    label: str,
    split_column: str | None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], list[str]]:
    """Feature matrix, labels and split values; the row number is the file line (header = 1)."""
    position = {name: i for i, name in enumerate(header)}
    columns = [position[name] for name in wanted]
    xs: list[list[float]] = []
    ys: list[float] = []
    splits: list[str] = []
    for row in reader:
        where = f"{source} row {reader.line_num}"
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} cells, the header has {len(header)}")
        xs.append([_number(row[i], where, header[i]) for i in columns])
        ys.append(_label(row[position[label]], where, label))
        if split_column is not None:
            value = row[position[split_column]].strip()
            if value not in SPLIT_VALUES:
                raise DatasetError(
                    f"{where}, column {split_column!r}: {value!r} is not one of {SPLIT_VALUES}"
                )
            splits.append(value)
    if not xs:
        raise DatasetError(f"{source}: no data rows")
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32), splits


def parse_features(
    data: bytes, *, source: str, features: Sequence[str]
) -> tuple[npt.NDArray[np.float32], list[int]]:
    """The ``features`` columns of every data row, in file order, with each row's line number
    (header = 1): rows to score with a trained model, which need no label or split column (a new
    patient has neither). Cells are checked exactly as ``parse_csv`` checks them."""
    reader, header = open_csv(data, source)
    missing = [c for c in features if c not in header]
    if missing:
        raise DatasetError(f"{source} row 1: missing columns {missing}; the header has {header}")
    columns = [header.index(c) for c in features]
    xs: list[list[float]] = []
    lines: list[int] = []
    for row in reader:
        where = f"{source} row {reader.line_num}"
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} cells, the header has {len(header)}")
        xs.append([_number(row[i], where, header[i]) for i in columns])
        lines.append(reader.line_num)
    if not xs:
        raise DatasetError(f"{source}: no data rows")
    return np.array(xs, dtype=np.float32), lines


def _number(cell: str, where: str, column: str) -> float:
    text = cell.strip()
    if not text:
        raise DatasetError(f"{where}, column {column!r}: empty cell")
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > float(np.finfo(np.float32).max):
        raise DatasetError(f"{where}, column {column!r}: {text!r} is not a finite float32")
    return value


def _label(cell: str, where: str, column: str) -> float:
    value = _number(cell, where, column)
    if value not in (0.0, 1.0):
        raise DatasetError(f"{where}, column {column!r}: label {cell.strip()!r} is not 0 or 1")
    return value


def random_split(
    source: str, y: npt.NDArray[np.float32], test_fraction: float, seed: int
) -> npt.NDArray[np.bool_]:
    """Train mask of a seeded split, stratified when each class has more than two rows (FLamby)."""
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test fraction must be strictly between 0 and 1, got {test_fraction}")
    _, counts = np.unique(y, return_counts=True)
    stratify = y if len(counts) > 1 and bool((counts > 2).all()) else None
    from sklearn.model_selection import train_test_split  # sklearn loads only to split

    try:
        train_idx, _ = train_test_split(
            np.arange(len(y)),
            test_size=test_fraction,
            random_state=seed,
            shuffle=True,
            stratify=stratify,
        )
    except ValueError as exc:
        raise DatasetError(f"{source}: cannot split {len(y)} rows: {exc}") from None
    train = np.zeros(len(y), dtype=bool)
    train[train_idx] = True
    return train
