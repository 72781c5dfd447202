"""Disclosure control: what a site may release, decided before anything leaves it.

Rules (DataSHIELD's ``nfilter.tab`` / ``nfilter.subset`` and OHDSI's ``minCellCount``, made
explicit):

* **Primary suppression.** A count cell ``c`` with ``0 < c < k`` is hidden. **Zeros are released**
  (as OHDSI and DataSHIELD do): a zero describes nobody. Hidden cells are therefore always
  positive, which matters below.
* **Complementary suppression.** A table is a set of count variables tied by released sums
  (``Margin``: total = sum of members; row, column and grand totals of a 2-D table, or the steps
  of an attrition chain). A hidden cell must not be recoverable from them, so

  - a margin never holds exactly one hidden variable (it would equal total minus the rest);
  - when a margin's total is released, its hidden members add up to 0 or at least k (otherwise
    every hidden member is known to be below k: an interval, not a value, but a small one);
  - and, because single lines are not enough in 2-D (two suppressed 2x2 blocks joined by one
    hidden cell: every row and column has two hidden cells, yet the joining cell equals a
    difference of block sums), the pattern is checked by exact linear algebra (``pinned``): a
    hidden variable is recoverable iff its unit vector lies in the row space of the margin
    equations restricted to the hidden variables. Because hidden cells are all positive, the true
    table is interior to the non-negative solutions, so non-negativity pins nothing extra.

  The second cell to hide is the smallest positive released one sharing a margin (least
  information lost); the loop runs to a fixed point. Only primary cells need protecting: a
  complementary cell that ends up recoverable anyway is shown, since it tells nothing new.
  Sizes the study has already vetted (cohort and stratum sizes, ``fixed``) are never hidden.
* **Subsets.** A subset (a stratum, a cohort) of size ``n`` out of ``N`` is refused unless both
  ``n`` and the rows it removes, ``N - n``, are 0 or at least k (DataSHIELD's differencing guard).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from medfed.errors import DisclosureError


@dataclass(frozen=True)
class Margin:
    """A released linear tie: ``values[total] == sum(values[m] for m in members)``."""

    total: int
    members: tuple[int, ...]

    def variables(self) -> tuple[int, ...]:
        return (self.total, *self.members)


@dataclass(frozen=True)
class LinearTable:
    """Count variables, the margins that tie them, and the ones that must stay released."""

    values: tuple[int, ...]
    margins: tuple[Margin, ...]
    fixed: frozenset[int] = frozenset()


def check_subset(name: str, size: int, total: int, k: int) -> None:
    """Refuse a subset, or the rows it removes, that is positive but below k."""
    if 0 < size < k:
        raise DisclosureError(f"subset {name!r} has {size} persons, below the threshold k={k}")
    removed = total - size
    if 0 < removed < k:
        raise DisclosureError(
            f"subset {name!r} removes {removed} of {total} persons, below the threshold k={k}: "
            "its statistics would differ from the full cohort's by fewer than k persons"
        )


def pinned(table: LinearTable, hidden: Iterable[int]) -> frozenset[int]:
    """The hidden variables an observer can solve for exactly from the released values.

    Exact rational Gauss-Jordan elimination of the margin equations restricted to the hidden
    columns: variable j is determined iff some reduced row is the unit vector e_j.
    """
    cols = sorted(set(hidden))
    if not cols:
        return frozenset()
    where = {var: i for i, var in enumerate(cols)}
    rows: list[list[Fraction]] = []
    for margin in table.margins:
        row = [Fraction(0)] * len(cols)
        for var, coef in ((margin.total, 1), *((m, -1) for m in margin.members)):
            if var in where:
                row[where[var]] += coef
        if any(row):
            rows.append(row)
    pivots = _reduce(rows, len(cols))
    found = {cols[col] for r, col in pivots if sum(1 for x in rows[r] if x != 0) == 1}
    return frozenset(found)


def _reduce(rows: list[list[Fraction]], width: int) -> list[tuple[int, int]]:
    """Gauss-Jordan in place; returns (row, pivot column) pairs."""
    pivots: list[tuple[int, int]] = []
    r = 0
    for col in range(width):
        pivot = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        lead = rows[r][col]
        rows[r] = [x / lead for x in rows[r]]
        for i, row in enumerate(rows):
            if i != r and row[col] != 0:
                factor = row[col]
                rows[i] = [a - factor * b for a, b in zip(row, rows[r], strict=True)]
        pivots.append((r, col))
        r += 1
        if r == len(rows):
            break
    return pivots


def suppress(table: LinearTable, k: int) -> frozenset[int]:
    """Primary then complementary suppression to a fixed point; returns the hidden variables.

    Only primary cells need protecting; the loop stops when none of them is recoverable, then
    releases complementary cells that turned out recoverable anyway. Raises DisclosureError when
    no released positive variable is left to hide and a primary cell is still recoverable (a
    degenerate table: the caller withholds it whole).
    """
    values = table.values
    if any(v < 0 for v in values):
        raise DisclosureError("counts must be non-negative")
    primary = {i for i, v in enumerate(values) if 0 < v < k}
    small_fixed = primary & table.fixed
    if small_fixed:
        raise DisclosureError(
            f"a cohort or stratum size is below k={k}: {sorted(values[i] for i in small_fixed)}"
        )
    hidden = set(primary)
    while True:
        extra = _line_fix(table, hidden, k)
        if extra is not None:
            hidden.add(extra)
            continue
        exposed = pinned(table, hidden) & primary
        if not exposed:
            break
        hidden.add(_unpin(table, hidden, min(exposed)))
    # A hidden complementary cell an observer can solve for anyway (e.g. the only positive cell
    # of a column whose other cells are released zeros) protects nothing: show it. Releasing
    # what is already derivable leaves what is derivable unchanged, so nothing else becomes so.
    return frozenset(hidden - (pinned(table, hidden) - primary))


def _hideable(table: LinearTable, hidden: set[int], candidates: Iterable[int]) -> list[int]:
    """Released, positive, not fixed; smallest first (ties by position, so it is deterministic)."""
    ok = {c for c in candidates if c not in hidden and c not in table.fixed and table.values[c] > 0}
    return sorted(ok, key=lambda c: (table.values[c], c))


def _line_fix(table: LinearTable, hidden: set[int], k: int) -> int | None:
    """The next variable to hide for a margin with one hidden variable or a small hidden mass."""
    for margin in table.margins:
        in_margin = [v for v in margin.variables() if v in hidden]
        if not in_margin:
            continue
        mass = sum(table.values[v] for v in margin.members if v in hidden)
        lone = len(in_margin) == 1
        small = margin.total not in hidden and 0 < mass < k
        if lone or small:
            options = _hideable(table, hidden, margin.variables())
            if options:
                return options[0]
    return None


def _unpin(table: LinearTable, hidden: set[int], target: int) -> int:
    """Hide one more variable so that ``target`` stops being recoverable, if one does it."""
    near = {v for m in table.margins if target in m.variables() for v in m.variables()}
    options = _hideable(table, hidden, near) or _hideable(table, hidden, range(len(table.values)))
    if not options:
        raise DisclosureError("no cell left to hide that protects this table; withhold it")
    for option in options:
        if target not in pinned(table, hidden | {option}):
            return option
    return options[0]


@dataclass(frozen=True)
class ProtectedGrid:
    """A levels x columns count table after suppression; column 0 is the overall column.

    ``cells[r][c]`` is None where hidden. ``totals[c]`` (cohort and stratum sizes) are always
    released: they were vetted by ``check_subset`` first.
    """

    cells: tuple[tuple[int | None, ...], ...]
    totals: tuple[int, ...]


def grid_table(counts: npt.NDArray[np.int64]) -> tuple[LinearTable, list[list[int]], list[int]]:
    """Lay out an R x G (levels x strata) table with its overall column as a LinearTable.

    Returns the table, the variable index of every cell (R x (1 + G), overall first) and of every
    column total. With one stratum (G == 1) the stratum is the overall column.
    """
    n_rows, n_groups = counts.shape
    values: list[int] = [int(x) for x in counts.ravel()]
    cell = [[r * n_groups + g for g in range(n_groups)] for r in range(n_rows)]
    margins: list[Margin] = []
    if n_groups == 1:
        total = len(values)
        values.append(int(counts.sum()))
        margins.append(Margin(total, tuple(row[0] for row in cell)))
        return LinearTable(tuple(values), tuple(margins), frozenset({total})), cell, [total]
    row_total = [len(values) + r for r in range(n_rows)]
    values.extend(int(x) for x in counts.sum(axis=1))
    col_total = [len(values) + g for g in range(n_groups)]
    values.extend(int(x) for x in counts.sum(axis=0))
    grand = len(values)
    values.append(int(counts.sum()))
    margins.extend(Margin(row_total[r], tuple(cell[r])) for r in range(n_rows))
    margins.extend(
        Margin(col_total[g], tuple(cell[r][g] for r in range(n_rows))) for g in range(n_groups)
    )
    margins.append(Margin(grand, tuple(row_total)))
    margins.append(Margin(grand, tuple(col_total)))
    layout = [[row_total[r], *cell[r]] for r in range(n_rows)]
    fixed = frozenset([*col_total, grand])
    return LinearTable(tuple(values), tuple(margins), fixed), layout, [grand, *col_total]


def protect_grid(counts: npt.NDArray[np.int64], k: int) -> ProtectedGrid:
    """Suppress an R x G count table (rows: levels, columns: strata) and its margins."""
    if counts.ndim != 2 or counts.shape[0] < 2 or counts.shape[1] < 1:
        raise DisclosureError("a count table needs at least two rows and one column")
    table, layout, totals = grid_table(counts.astype(np.int64))
    hidden = suppress(table, k)
    cells = tuple(tuple(None if v in hidden else table.values[v] for v in row) for row in layout)
    return ProtectedGrid(cells, tuple(table.values[t] for t in totals))


def protect_chain(counts: Sequence[int], k: int) -> tuple[tuple[int | None, ...], ...]:
    """Suppress an attrition chain N_0 >= N_1 >= ... >= N_m (N_m, the cohort, stays released).

    The removed counts r_i = N_(i-1) - N_i are variables too: releasing N_(i-1) and N_i releases
    r_i, so a step that drops 0 < r_i < k persons must hide one of its neighbours. Returns
    ``(N_i, r_i)`` per step (``r_0`` is None), None where hidden.
    """
    if not counts:
        return ()
    if any(b > a for a, b in itertools.pairwise(counts)) or min(counts) < 0:
        raise DisclosureError("attrition counts must be non-negative and non-increasing")
    m = len(counts)
    values = [*counts, *(a - b for a, b in itertools.pairwise(counts))]
    margins = tuple(Margin(i - 1, (i, m + i - 1)) for i in range(1, m))
    table = LinearTable(tuple(values), margins, frozenset({m - 1}))
    hidden = suppress(table, k)

    def shown(v: int) -> int | None:
        return None if v in hidden else values[v]

    return tuple((shown(i), None if i == 0 else shown(m + i - 1)) for i in range(m))
