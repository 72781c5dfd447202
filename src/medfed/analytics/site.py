"""The node side: turn a site's feature matrix into the SiteSummary it may release.

Everything here runs inside the hospital. The order is the guarantee: subsets are vetted (cohort,
strata, the rows they remove, earlier releases) before any statistic is computed, every count table
goes through ``disclosure.protect_grid``, histograms are merged until no bin is small, and moments
are only computed for columns whose count is itself released.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from medfed.analytics.disclosure import check_subset, protect_chain, protect_grid
from medfed.analytics.histogram import fine_counts, protect_histograms
from medfed.analytics.moments import Moments, moments_of
from medfed.analytics.release_log import ReleaseLog
from medfed.analytics.spec import DEFAULT_K, Column, ColumnKind, StatsSpec
from medfed.analytics.summary import (
    MISSING,
    AttritionStep,
    CategoricalSummary,
    ContinuousSummary,
    CountRow,
    FeatureSummary,
    SiteSummary,
)
from medfed.errors import ConfigError, DatasetError, DisclosureError

Mask = npt.NDArray[np.bool_]


def summarize(
    matrix: npt.NDArray[np.float64],
    columns: Sequence[Column],
    spec: StatsSpec,
    k: int = DEFAULT_K,
    release_log: ReleaseLog | None = None,
    *,
    site: str,
    person_ids: npt.NDArray[np.int64] | None = None,
    attrition: Sequence[tuple[str, int]] = (),
) -> SiteSummary:
    """A site's disclosure-controlled Table 1 contribution.

    ``matrix`` has one row per cohort member and one column per ``columns`` entry (NaN = missing).
    ``k`` is the hospital's threshold (raised to ``spec.k_floor`` if lower, refused below 3).
    With a ``release_log``, ``person_ids`` (one per row) must be given: the log refuses a cohort or
    stratum that differs from an earlier release of the study by fewer than k persons, and
    records this release once it is computed. ``attrition`` is the cohort's steps, (name, persons
    left), ending at the cohort size.
    """
    k = spec.effective_k(k)
    cols = tuple(columns)
    spec.check_columns(cols)
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(cols):
        raise DatasetError(f"matrix shape {x.shape} does not match {len(cols)} columns")
    n = int(x.shape[0])
    check_subset("cohort", n, n, k)
    _check_steps(attrition, spec)
    labels, strata = _strata(x, cols, spec.group)
    for label, mask in zip(labels, strata, strict=True):
        check_subset(label, int(mask.sum()), n, k)
    subsets = _subsets(n, person_ids, release_log, labels, strata)
    fingerprint = spec.fingerprint()
    if release_log is not None:
        release_log.check(subsets, spec.bins_fingerprint(), k)
    views = [np.ones(n, dtype=bool), *strata] if len(strata) > 1 else [np.ones(n, dtype=bool)]
    features: list[FeatureSummary] = []
    withheld: list[str] = []
    for j, col in enumerate(cols):
        if col.name == spec.group:
            continue
        try:
            features.append(_feature(x[:, j], col, spec, views, k))
        except DisclosureError:
            withheld.append(col.name)
    summary = SiteSummary(
        site=site,
        k=k,
        spec_fingerprint=fingerprint,
        columns=("overall", *labels) if len(strata) > 1 else ("overall",),
        totals=tuple(int(v.sum()) for v in views),
        attrition=_attrition(attrition, n, k),
        features=tuple(features),
        withheld=tuple(withheld),
    )
    if release_log is not None:
        release_log.record(subsets, spec.bins_fingerprint())
    return summary


def _strata(
    x: npt.NDArray[np.float64], cols: tuple[Column, ...], group: str | None
) -> tuple[list[str], list[Mask]]:
    """Labels and row masks of the group's levels (plus MISSING when some rows lack it)."""
    if group is None:
        return [], []
    j = next(i for i, c in enumerate(cols) if c.name == group)
    names = cols[j].level_names()
    codes = _codes(x[:, j], cols[j])
    labels = [f"{group}={name}" for name in names]
    masks = [codes == i for i in range(len(names))]
    if np.any(codes < 0):
        labels.append(f"{group}={MISSING}")
        masks.append(codes < 0)
    return labels, masks


def _subsets(
    n: int,
    person_ids: npt.NDArray[np.int64] | None,
    release_log: ReleaseLog | None,
    labels: list[str],
    strata: list[Mask],
) -> dict[str, npt.NDArray[np.int64]]:
    if release_log is None:
        return {}
    if person_ids is None or person_ids.shape != (n,):
        raise ConfigError("a release log needs one person id per matrix row")
    ids = person_ids.astype(np.int64)
    return {"cohort": ids, **{lab: ids[m] for lab, m in zip(labels, strata, strict=True)}}


def _codes(values: npt.NDArray[np.float64], col: Column) -> npt.NDArray[np.int64]:
    """Level codes, -1 where missing; refuse codes outside the declared levels."""
    finite = np.isfinite(values)
    levels = len(col.level_names())
    present = values[finite]
    if np.any((present != np.round(present)) | (present < 0) | (present >= levels)):
        raise DatasetError(f"column {col.name!r} holds codes outside its {levels} levels")
    codes = np.full(values.shape, -1, dtype=np.int64)
    codes[finite] = present.astype(np.int64)
    return codes


def _feature(
    values: npt.NDArray[np.float64], col: Column, spec: StatsSpec, views: list[Mask], k: int
) -> FeatureSummary:
    if col.kind is ColumnKind.CONTINUOUS:
        return _continuous(values, col, spec.bins[col.name], views, k)
    codes = _codes(values, col)
    names = col.level_names()
    groups = views[1:] or views
    counts = np.array(
        [[int(np.sum(codes[g] == i)) for g in groups] for i in range(len(names))]
        + [[int(np.sum(codes[g] < 0)) for g in groups]],
        dtype=np.int64,
    )
    grid = protect_grid(counts, k)
    rows = tuple(
        CountRow(level, cells) for level, cells in zip((*names, MISSING), grid.cells, strict=True)
    )
    return CategoricalSummary(col.name, col.kind, rows)


def _continuous(
    values: npt.NDArray[np.float64],
    col: Column,
    edges: tuple[float, ...],
    views: list[Mask],
    k: int,
) -> ContinuousSummary:
    finite = np.isfinite(values)
    groups = views[1:] or views
    counts = np.array(
        [[int(np.sum(finite & g)) for g in groups], [int(np.sum(~finite & g)) for g in groups]],
        dtype=np.int64,
    )
    grid = protect_grid(counts, k)
    present, missing = grid.cells
    true_present = [int(np.sum(finite & v)) for v in views]
    released = [p is not None and p > 0 for p in present]
    if len(views) > 1 and present[0] is not None:
        hidden_mass = sum(true_present[c] for c in range(1, len(views)) if present[c] is None)
        if 0 < hidden_mass < k:
            released = [False] * len(views)
    moments: list[Moments | None] = [
        moments_of(values[finite & v]) if ok else None
        for v, ok in zip(views, released, strict=True)
    ]
    fine = np.stack([fine_counts(values[finite & v], edges) for v in views], axis=1)
    bounds, histogram = protect_histograms(fine, released, k)
    return ContinuousSummary(
        name=col.name,
        present=present,
        missing=missing,
        moments=tuple(moments),
        boundaries=bounds,
        histogram=histogram,
    )


def _check_steps(steps: Sequence[tuple[str, int]], spec: StatsSpec) -> None:
    """A query pinned to a cohort spec's steps refuses a chain with other steps (or none)."""
    names = tuple(name for name, _ in steps)
    if spec.attrition and names != spec.attrition:
        raise ConfigError(
            f"the query asks for the attrition steps {list(spec.attrition)}, "
            f"the site's cohort ran {list(names)}"
        )


def fine_histograms(
    matrix: npt.NDArray[np.float64], columns: Sequence[Column], spec: StatsSpec
) -> dict[str, npt.NDArray[np.int64]]:
    """Unmerged counts per fine bin (fine bins x the summary's columns) of every continuous
    feature: a secure query's input (secure_table.py), never released on their own.

    Call after ``summarize`` has accepted the same rows: its subset checks are the gate."""
    cols = tuple(columns)
    x = np.asarray(matrix, dtype=np.float64)
    _, strata = _strata(x, cols, spec.group)
    n = int(x.shape[0])
    views = [np.ones(n, dtype=bool), *strata] if len(strata) > 1 else [np.ones(n, dtype=bool)]
    out: dict[str, npt.NDArray[np.int64]] = {}
    for j, col in enumerate(cols):
        if col.kind is ColumnKind.CONTINUOUS:
            values = x[:, j]
            finite = np.isfinite(values)
            edges = spec.bins[col.name]
            out[col.name] = np.stack(
                [fine_counts(values[finite & v], edges) for v in views], axis=1
            )
    return out


def _attrition(steps: Sequence[tuple[str, int]], n: int, k: int) -> tuple[AttritionStep, ...]:
    if not steps:
        return ()
    counts = [int(c) for _, c in steps]
    if counts[-1] != n:
        raise ConfigError(f"the last attrition step ({counts[-1]}) must be the cohort size ({n})")
    shown = protect_chain(counts, k)
    return tuple(
        AttritionStep(name, count, removed)
        for (name, _), (count, removed) in zip(steps, shown, strict=True)
    )
