from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.analytics.disclosure import (
    LinearTable,
    Margin,
    ProtectedGrid,
    check_subset,
    pinned,
    protect_chain,
    protect_grid,
    suppress,
)
from medfed.analytics.spec import StatsSpec, check_k
from medfed.errors import ConfigError, DisclosureError


def solvable_cells(grid: ProtectedGrid) -> list[tuple[int, int]]:
    """Brute-force attacker, independent of the library: write the released margins as a linear
    system in the hidden cells and report each hidden cell whose column of the system is not in
    the span of the others (i.e. the system determines it uniquely)."""
    n_cols = len(grid.cells[0])
    hidden = [(r, c) for r, row in enumerate(grid.cells) for c, v in enumerate(row) if v is None]
    where = {cell: i for i, cell in enumerate(hidden)}
    equations: list[tuple[dict[tuple[int, int], int], bool]] = []
    if n_cols == 1:
        equations.append(({(r, 0): 1 for r in range(len(grid.cells))}, True))
    else:
        for r in range(len(grid.cells)):
            coef = {(r, 0): 1} | {(r, c): -1 for c in range(1, n_cols)}
            equations.append((coef, True))
        for c in range(n_cols):
            equations.append(({(r, c): 1 for r in range(len(grid.cells))}, True))
    matrix = np.zeros((len(equations), len(hidden)))
    for i, (coef, _) in enumerate(equations):
        for cell, a in coef.items():
            if cell in where:
                matrix[i, where[cell]] = a
    if not hidden:
        return []
    rank = np.linalg.matrix_rank(matrix)
    return [
        cell
        for cell, j in where.items()
        if np.linalg.matrix_rank(np.delete(matrix, j, axis=1)) < rank
    ]


small_or_large = st.one_of(st.integers(0, 6), st.integers(0, 80))


@st.composite
def count_tables(draw: st.DrawFn) -> np.ndarray:
    rows = draw(st.integers(2, 6))
    cols = draw(st.integers(1, 4))
    cells = draw(st.lists(small_or_large, min_size=rows * cols, max_size=rows * cols))
    return np.array(cells, dtype=np.int64).reshape(rows, cols)


def expand(counts: np.ndarray) -> np.ndarray:
    """The true table in ProtectedGrid's layout: overall column first (unless one column)."""
    if counts.shape[1] == 1:
        return counts
    return np.column_stack([counts.sum(axis=1), counts])


@settings(max_examples=300, deadline=None)
@given(count_tables(), st.integers(3, 8))
def test_random_tables_release_no_small_cell_and_no_derivable_hidden_cell(counts, k):
    col_totals = counts.sum(axis=0)
    if np.any((col_totals > 0) & (col_totals < k)):
        with pytest.raises(DisclosureError):
            protect_grid(counts, k)
        return
    grid = protect_grid(counts, k)
    truth = expand(counts)
    for r, row in enumerate(grid.cells):
        for c, value in enumerate(row):
            if value is not None:
                assert value == truth[r, c]
                assert value == 0 or value >= k
            else:
                assert truth[r, c] > 0
    assert solvable_cells(grid) == []
    if len(grid.cells[0]) > 1:
        assert list(grid.totals) == [int(counts.sum()), *col_totals.tolist()]
        for c in range(len(grid.cells[0])):
            column = [row[c] for row in grid.cells]
            assert column.count(None) != 1
        for row in grid.cells:
            if row[0] is not None:
                assert row[1:].count(None) != 1


def test_one_dimensional_table_with_total_hides_a_second_cell():
    grid = protect_grid(np.array([[2], [40], [30], [0]]), k=5)
    assert grid.cells == ((None,), (40,), (None,), (0,))
    assert grid.totals == (72,)


def test_zeros_are_released_and_never_used_as_complement():
    grid = protect_grid(np.array([[24, 0], [1, 36]]), k=5)
    assert grid.cells[0][2] == 0
    assert all(v is None or v == 0 or v >= 5 for row in grid.cells for v in row)
    assert solvable_cells(grid) == []


def test_line_rule_alone_misses_a_bridge_that_linear_algebra_catches():
    # Two 2x2 blocks of hidden cells joined by one more: each row and column holds two or more
    # hidden cells, yet the joining cell (row 1, column 2) is a difference of block sums.
    cells = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (1, 2)]
    values = np.full((4, 4), 20, dtype=np.int64)
    index = {(r, c): r * 4 + c for r in range(4) for c in range(4)}
    rows = [Margin(16 + r, tuple(index[r, c] for c in range(4))) for r in range(4)]
    cols = [Margin(20 + c, tuple(index[r, c] for r in range(4))) for c in range(4)]
    table = LinearTable(
        tuple([*values.ravel().tolist(), *[80] * 8]), tuple(rows + cols), frozenset(range(16, 24))
    )
    assert pinned(table, [index[c] for c in cells]) == {index[1, 2]}


def test_suppress_protects_the_bridge_cell_when_it_is_primary():
    values = [20] * 16
    values[1 * 4 + 2] = 2
    index = {(r, c): r * 4 + c for r in range(4) for c in range(4)}
    rows = [Margin(16 + r, tuple(index[r, c] for c in range(4))) for r in range(4)]
    cols = [Margin(20 + c, tuple(index[r, c] for r in range(4))) for c in range(4)]
    totals = [sum(values[index[r, c]] for c in range(4)) for r in range(4)]
    totals += [sum(values[index[r, c]] for r in range(4)) for c in range(4)]
    table = LinearTable(tuple(values + totals), tuple(rows + cols), frozenset(range(16, 24)))
    hidden = suppress(table, k=5)
    assert index[1, 2] in hidden
    assert pinned(table, hidden) == frozenset()


def test_attrition_step_removing_few_persons_hides_a_neighbour():
    # 300 -> 298 removes 2: showing both would show the 2, so 298 is hidden, and with it the
    # 98 that step 3 removes (else 298 = 200 + 98). Hidden: 2 + 98 = 100, neither alone.
    shown = protect_chain([500, 300, 298, 200], k=5)
    assert shown == ((500, None), (300, 200), (None, None), (200, None))


def test_attrition_must_not_grow():
    with pytest.raises(DisclosureError, match="non-increasing"):
        protect_chain([100, 120], k=5)


@pytest.mark.parametrize(("size", "total"), [(4, 100), (96, 100), (1, 1)])
def test_subset_or_the_rows_it_removes_below_k_is_refused(size, total):
    with pytest.raises(DisclosureError):
        check_subset("stratum", size, total, k=5)


@pytest.mark.parametrize(("size", "total"), [(5, 100), (95, 100), (100, 100), (0, 100)])
def test_subset_and_remainder_zero_or_at_least_k_pass(size, total):
    check_subset("stratum", size, total, k=5)


@pytest.mark.parametrize("k", [2, 1, 0, -5])
def test_threshold_below_three_is_refused(k):
    with pytest.raises(ConfigError, match="below the floor of 3"):
        check_k(k)
    with pytest.raises(ConfigError):
        StatsSpec(k_floor=k)


def test_site_may_raise_k_and_the_study_floor_wins_when_higher():
    spec = StatsSpec(k_floor=10)
    assert spec.effective_k(5) == 10
    assert spec.effective_k(12) == 12
    assert check_k(3) == 3
