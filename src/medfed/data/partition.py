"""Partitioners that cut one dataset into simulated hospitals, for federated experiments.

A real consortium's sites differ in size and case mix; a simulation has to reproduce that on
purpose. The schemes follow the non-IID taxonomy of Li, Diao, Chen and He, "Federated Learning on
Non-IID Data Silos: An Experimental Study" (ICDE 2022, NIID-Bench):

- ``natural``: the data's own grouping (e.g. one part per recording centre), no randomness;
- ``dirichlet_label_skew``: label-distribution skew. For every class, the share of that class each
  part receives is drawn from a symmetric Dirichlet(alpha). This is the per-class form of Yurochkin
  et al. (ICML 2019) used by NIID-Bench; Hsu, Qi and Brown, "Measuring the Effects of Non-Identical
  Data Distribution for Federated Visual Classification" (2019), popularised Dirichlet(alpha) label
  skew with the dual per-client draw. Small alpha gives parts dominated by one class, large alpha
  gives every part the global class mix;
- ``quantity_skew``: part sizes from Dirichlet(alpha) shares of the rows, labels ignored;
- ``iid``: a uniform random split into near-equal parts, the baseline.

Every partitioner returns disjoint, sorted index arrays that together cover ``range(n)``, and takes
its randomness as a ``np.random.Generator`` so one seed reproduces one split. ``split_dataset``
turns the index arrays into one ``TabularDataset`` per simulated hospital.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Hashable, Sequence
from typing import SupportsIndex

import numpy as np
import numpy.typing as npt

from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError

IndexArray = npt.NDArray[np.intp]

MAX_TRIES = 100
"""Dirichlet draws tried before a ``min_size`` is declared out of reach for that alpha."""


def natural(groups: Sequence[Hashable]) -> dict[Hashable, IndexArray]:
    """Row indices of each group value, groups in order of first appearance, indices ascending."""
    members: dict[Hashable, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    return {group: np.array(rows, dtype=np.intp) for group, rows in members.items()}


def iid(n: int, n_parts: int, rng: np.random.Generator) -> list[IndexArray]:
    """A uniformly random split of ``range(n)`` into ``n_parts`` parts, sizes within one row."""
    n = _count(n, "n", minimum=0)
    n_parts = _count(n_parts, "n_parts", minimum=1)
    if n < n_parts:
        raise DatasetError(f"cannot split {n} rows into {n_parts} non-empty parts")
    return [np.sort(part) for part in np.array_split(rng.permutation(n), n_parts)]


def quantity_skew(
    n: int, n_parts: int, alpha: float, rng: np.random.Generator, min_size: int = 1
) -> list[IndexArray]:
    """Random rows into parts whose sizes are Dirichlet(alpha) shares of ``n`` (NIID-Bench).

    Draws are repeated (at most ``MAX_TRIES``) until every part has ``min_size`` rows, so small
    parts are not silently empty; the first draw that fits is kept, which conditions the sizes on
    that constraint.
    """
    n = _count(n, "n", minimum=0)
    n_parts, alpha, min_size = _check_skew(n, n_parts, alpha, min_size)
    for _ in range(MAX_TRIES):
        shares = rng.dirichlet(np.full(n_parts, alpha))
        parts = _cut(rng.permutation(n), shares)
        if min(len(part) for part in parts) >= min_size:
            return [np.sort(part) for part in parts]
    raise _infeasible(n_parts, alpha, min_size)


def dirichlet_label_skew(
    labels: npt.ArrayLike,
    n_parts: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
) -> list[IndexArray]:
    """Label-skewed parts: each class's rows shared out by Dirichlet(alpha) proportions.

    For every class c (in sorted order), its rows are shuffled and cut at the cumulative
    proportions of ``p_c ~ Dir(alpha * 1_{n_parts})``. The whole draw is repeated (at most
    ``MAX_TRIES``) until every part has ``min_size`` rows; tiny alpha with many parts and few
    classes can make that impossible in practice, which raises instead of looping forever.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DatasetError(f"labels must be one-dimensional, got shape {y.shape}")
    n_parts, alpha, min_size = _check_skew(len(y), n_parts, alpha, min_size)
    _, codes = np.unique(y, return_inverse=True)
    by_class = [np.flatnonzero(codes == c) for c in range(int(codes.max(initial=-1)) + 1)]
    for _ in range(MAX_TRIES):
        pieces: list[list[IndexArray]] = [[] for _ in range(n_parts)]
        for rows in by_class:
            shares = rng.dirichlet(np.full(n_parts, alpha))
            for k, piece in enumerate(_cut(rng.permutation(rows), shares)):
                pieces[k].append(piece)
        parts = [np.sort(np.concatenate(p)) if p else np.empty(0, np.intp) for p in pieces]
        if min(len(part) for part in parts) >= min_size:
            return parts
    raise _infeasible(n_parts, alpha, min_size)


def split_dataset(
    data: TabularDataset,
    parts: Sequence[npt.ArrayLike],
    test_fraction: float,
    rng: np.random.Generator,
) -> list[TabularDataset]:
    """One dataset per part, made from ``data``'s *training* rows and split into train and test.

    ``data``'s own test rows are left out, so they can stay a held-out set no simulated hospital
    has seen. Each part is split stratified by label: every class gives ``test_fraction`` of its
    rows to the test split (largest-remainder rounding, so each class is within one row of its
    exact share); a part with a single class therefore just splits at random. Every part keeps at
    least one train and one test row, so a part needs two rows.
    """
    if not (_is_real(test_fraction) and 0.0 < test_fraction < 1.0):
        raise DatasetError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    indices = _check_parts(parts, len(data.y_train))
    out = []
    for part in indices:
        test = part[_test_positions(data.y_train[part], test_fraction, rng)]
        train = np.setdiff1d(part, test)
        out.append(
            TabularDataset(
                features=data.features,
                label=data.label,
                x_train=data.x_train[train],
                y_train=data.y_train[train],
                x_test=data.x_train[test],
                y_test=data.y_train[test],
            )
        )
    return out


def _cut(rows: IndexArray, shares: npt.NDArray[np.float64]) -> list[IndexArray]:
    """``rows`` cut into consecutive pieces at the cumulative ``shares`` (floored boundaries)."""
    bounds = np.floor(np.cumsum(shares)[:-1] * len(rows)).astype(np.intp)
    return list(np.split(rows, np.minimum(bounds, len(rows))))


def _test_positions(
    y: npt.NDArray[np.float32], test_fraction: float, rng: np.random.Generator
) -> IndexArray:
    """Positions (into ``y``) of a stratified test sample of ``test_fraction`` of the rows."""
    n = len(y)
    n_test = min(max(round(test_fraction * n), 1), n - 1)
    classes, counts = np.unique(y, return_counts=True)
    quota = n_test * counts / n
    take = np.floor(quota).astype(np.intp)
    # Largest remainder: the rows still owed go to the classes with the biggest fractional part.
    owed = n_test - int(take.sum())
    take[np.argsort(take - quota, kind="stable")[:owed]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(y == c))[:t] for c, t in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def _check_parts(parts: Sequence[npt.ArrayLike], n_rows: int) -> list[IndexArray]:
    if len(parts) == 0:
        raise DatasetError("parts is empty: give at least one array of row indices")
    out = []
    for k, raw in enumerate(parts):
        part = np.asarray(raw)
        if part.ndim != 1 or not np.issubdtype(part.dtype, np.integer):
            raise DatasetError(
                f"part {k} must be a 1-D array of integer row indices, "
                f"got shape {part.shape} dtype {part.dtype}"
            )
        if len(part) < 2:
            raise DatasetError(
                f"part {k} has {len(part)} row(s); it needs at least 2 to split into train and "
                "test (use min_size >= 2 when partitioning)"
            )
        if part.min() < 0 or part.max() >= n_rows:
            raise DatasetError(
                f"part {k} holds row indices outside 0..{n_rows - 1} (the training rows)"
            )
        if len(np.unique(part)) != len(part):
            raise DatasetError(f"part {k} lists a row more than once")
        out.append(np.sort(part.astype(np.intp)))
    every = np.concatenate(out)
    if len(np.unique(every)) != len(every):
        raise DatasetError("parts overlap: a row may belong to one simulated hospital only")
    return out


def _check_skew(n: int, n_parts: int, alpha: float, min_size: int) -> tuple[int, float, int]:
    n_parts = _count(n_parts, "n_parts", minimum=1)
    min_size = _count(min_size, "min_size", minimum=0)
    if not (_is_real(alpha) and math.isfinite(alpha) and alpha > 0):
        raise DatasetError(f"alpha must be a finite number > 0, got {alpha!r}")
    if n_parts * min_size > n:
        raise DatasetError(
            f"{n} rows cannot give {n_parts} parts at least {min_size} rows each; "
            "lower n_parts or min_size"
        )
    return n_parts, float(alpha), min_size


def _count(value: SupportsIndex, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise DatasetError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise DatasetError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise DatasetError(f"{name} must be >= {minimum}, got {number}")
    return number


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _infeasible(n_parts: int, alpha: float, min_size: int) -> DatasetError:
    return DatasetError(
        f"no Dirichlet(alpha={alpha}) draw in {MAX_TRIES} tries gave all {n_parts} parts "
        f"at least {min_size} rows: alpha is too small or min_size too large for this data; "
        "raise alpha, or lower n_parts or min_size"
    )
