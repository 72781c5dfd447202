"""What the coordinator may release from a secure statistics sum, and the pooled Table 1.

The sites' summed vector (secure_table.py) has a *released* region, already disclosure-controlled
at every site, and a *controlled* region of exact pooled counts: fixed-bin histograms, attrition
counts and the declared k. ``release`` applies disclosure control to the controlled region, at
the coordinator, before anything of it is shown or stored; ``pooled_table`` builds the pooled-only
Table 1 from the released region and that release.

Why this keeps the issue's rule ("before anything leaves a node, cells below k are suppressed"):
no site's cell leaves its node. A site's fixed-bin and attrition counts leave it only inside its
SecAgg+ input, masked by pairwise and self masks that cancel only in the sum of at least the
protocol's threshold of sites; the coordinator unmasks that sum and nothing else, and the sum is a
pooled table, protected here exactly as a site protects its own before release. (As for every
secure sum, a coordinator colluding with all other contributing sites could subtract their
inputs; SecAgg+'s threshold and ``min_nodes >= 2`` bound that, they do not remove it.) A site
still gates its own contribution as in the clear: a cohort, stratum or removed subset below its k,
or a differencing attempt against its release log, refuses the whole query at that site.

The rule for k: the pooled tables are protected with the **largest k any contributing site
declared** (each site sets a one-hot slot of its effective k, so the sum shows which k occur), and
never below the study's ``k_floor``. So a pooled cell is shown only if it would satisfy the
strictest site, although it is no longer any one site's cell.

Histograms: the pooled fine-bin counts of a column are considered for release only where the
pooled present count of that column is exact (no site hid its part): the histogram's total is
that count, so it then adds nothing to what the table already shows; a column some site hid part
of stays unreleased (its exact total minus the released lower bound would give the hidden part).
The columns that are released are merged exactly as a site merges its own
(``histogram.protect_histograms``: every observable column, including overall minus the released
strata, has merged bins of 0 or >= k), and only the merged histogram is kept; quartiles and their
intervals are read from it with ``histogram.quantiles``, as in the clear path. With no merge
needed the result equals the clear path's quartiles.

Attrition: the pooled chain (persons, i.e. cohort entries, left after each step, ending at the
pooled cohort size) goes through ``disclosure.protect_chain``, the clear path's primary and
complementary suppression, so a step removing 1..k-1 persons in the pool hides a neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from medfed.analytics.disclosure import protect_chain
from medfed.analytics.histogram import protect_histograms, quantiles
from medfed.analytics.moments import Moments, from_shifted
from medfed.analytics.secure_table import BINARY_LEVELS, Layout, split
from medfed.analytics.spec import MIN_K, ColumnKind, StatsSpec
from medfed.analytics.table1 import (
    AttritionLine,
    CategoricalBlock,
    ContinuousBlock,
    CountLine,
    PooledCount,
    PooledStat,
    Quartiles,
    Table1,
)
from medfed.analytics.wire import centre
from medfed.errors import ConfigError, DisclosureError, ProtocolError

Floats = npt.NDArray[np.float64]
MergedHistogram = tuple[tuple[int, ...], tuple[tuple[int, ...] | None, ...]]
"""Boundaries over the fine bins, and counts per merged bin of each column (None: withheld)."""


@dataclass(frozen=True)
class PooledRelease:
    """The controlled region after the coordinator's disclosure control: what may be stored."""

    k: int = 0
    histograms: Mapping[str, MergedHistogram] = field(default_factory=dict)
    attrition: tuple[tuple[int | None, int | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        histograms = {
            name: {"bounds": list(bounds), "counts": [_list(c) for c in counts]}
            for name, (bounds, counts) in sorted(self.histograms.items())
        }
        attrition = [list(step) for step in self.attrition]
        return {"k": self.k, "histograms": histograms, "attrition": attrition}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PooledRelease:
        try:
            histograms = {
                str(name): (
                    tuple(int(b) for b in h["bounds"]),
                    tuple(None if c is None else tuple(int(v) for v in c) for c in h["counts"]),
                )
                for name, h in raw["histograms"].items()
            }
            attrition = tuple((_opt(step[0]), _opt(step[1])) for step in raw["attrition"])
            return cls(int(raw["k"]), histograms, attrition)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ProtocolError(f"malformed pooled release: {exc!r}") from exc


def _list(counts: tuple[int, ...] | None) -> list[int] | None:
    return None if counts is None else list(counts)


def _opt(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def release(sums: Floats, spec: StatsSpec, lay: Layout, sites: int) -> PooledRelease:
    """Disclosure control of the controlled region of ``sites`` sites' summed vector."""
    parts = split(sums, lay)
    k = pooled_k(parts["k"], spec, sites)
    histograms: dict[str, MergedHistogram] = {}
    for name, kind in lay.features:
        if kind is ColumnKind.CONTINUOUS:
            histograms[name] = _histogram(parts, name, k)
    return PooledRelease(k, histograms, _chain(parts, lay, k))


def pooled_k(declared: Floats, spec: StatsSpec, sites: int) -> int:
    """The largest k the sites declared (one-hot slots), never below the study's floor."""
    counts = np.rint(declared).astype(np.int64)
    if np.any(counts < 0) or int(counts.sum()) != sites:
        raise ConfigError(f"the sites' declared k do not add up to {sites} site(s)")
    return max(spec.k_floor, MIN_K + int(np.flatnonzero(counts).max()))


def _histogram(parts: Mapping[str, Floats], name: str, k: int) -> MergedHistogram:
    fine = np.rint(parts[f"hist/{name}"]).astype(np.int64)
    present = np.rint(parts[f"cont/{name}/count"][0]).astype(np.int64)
    hidden = np.rint(parts[f"cont/{name}/count#hidden"][0]).astype(np.int64)
    released = [
        bool(hidden[c] == 0 and present[c] > 0 and int(fine[:, c].sum()) == present[c])
        for c in range(fine.shape[1])
    ]
    if np.any(fine < 0):
        released = [False] * fine.shape[1]
    return protect_histograms(fine, released, k)


def _chain(
    parts: Mapping[str, Floats], lay: Layout, k: int
) -> tuple[tuple[int | None, int | None], ...]:
    if not lay.attrition:
        return ()
    counts = [round(float(v)) for v in parts["attrition"]]
    hidden: tuple[tuple[int | None, int | None], ...] = ((None, None),) * len(counts)
    if counts[-1] != round(float(parts["totals"][0])) or round(float(parts["totals#hidden"][0])):
        return hidden  # an inconsistent chain is not shown rather than guessed at
    try:
        shown = protect_chain(counts, k)
    except DisclosureError:
        return hidden
    return tuple((left, gone) for left, gone in shown)


def pooled_table(
    sums: Floats, spec: StatsSpec, lay: Layout, sites: int, released: PooledRelease | None = None
) -> Table1:
    """The pooled-only Table 1 (no per-site columns) from the released region of ``sites``
    sites' summed vector (or the whole sum) and the controlled region's ``released`` form."""
    parts = split(sums, lay)
    rel = released if released is not None else PooledRelease()
    features: list[CategoricalBlock | ContinuousBlock] = []
    for name, kind in lay.features:
        if kind is ColumnKind.BINARY:
            key = f"cat/{name}"
            lines = tuple(
                _line(level, parts[key][i], parts[f"{key}#hidden"][i], sites)
                for i, level in enumerate(BINARY_LEVELS)
            )
            features.append(CategoricalBlock(name, kind.value, lines))
            continue
        features.append(_continuous(parts, spec, lay, name, sites, rel))
    attrition = tuple(
        AttritionLine(step, (), (PooledCount(left, left is not None),
                                 PooledCount(gone, gone is not None)))
        for step, (left, gone) in zip(lay.attrition, rel.attrition, strict=False)
    )  # fmt: skip
    return Table1(
        sites=(),
        columns=lay.columns,
        k=(),
        spec_fingerprint=spec.fingerprint(),
        totals=_line("N", parts["totals"], parts["totals#hidden"], sites),
        attrition=attrition,
        features=tuple(features),
        withheld=(),
    )


def _continuous(
    parts: Mapping[str, Floats],
    spec: StatsSpec,
    lay: Layout,
    name: str,
    sites: int,
    rel: PooledRelease,
) -> ContinuousBlock:
    count, hidden = parts[f"cont/{name}/count"], parts[f"cont/{name}/count#hidden"]
    shifted, unreleased = parts[f"cont/{name}/shifted"], parts[f"cont/{name}/shifted#hidden"]
    c = centre(spec, name)
    merged = rel.histograms.get(name)
    stats = tuple(
        _stat(shifted[col], unreleased[col, 0], c, sites, _quartiles(merged, col, spec, name))
        for col in range(len(lay.columns))
    )
    return ContinuousBlock(
        name=name,
        present=_line("present", count[0], hidden[0], sites),
        missing=_line("missing", count[1], hidden[1], sites),
        site_moments=(),
        site_quartiles=(),
        pooled=stats,
    )


def _quartiles(
    merged: MergedHistogram | None, col: int, spec: StatsSpec, name: str
) -> Quartiles | None:
    if merged is None or merged[1][col] is None:
        return None
    bounds, counts = merged
    q1, med, q3 = quantiles([(counts[col] or (), bounds)], spec.bins[name], (0.25, 0.5, 0.75))
    if q1 is None or med is None or q3 is None:
        return None
    return Quartiles(q1, med, q3)


def _line(level: str, values: Floats, hidden: Floats, sites: int) -> CountLine:
    pooled = tuple(
        PooledCount(None if round(h) >= sites else round(v), round(h) == 0)
        for v, h in zip(values, hidden, strict=True)
    )
    return CountLine(level, (), pooled)


def _stat(
    shifted: Floats, unreleased: float, c: float, sites: int, quartiles: Quartiles | None
) -> PooledStat:
    hid = round(unreleased)
    moments: Moments | None = None
    if hid < sites and round(shifted[0]) > 0:
        moments = from_shifted(float(shifted[0]), float(shifted[1]), float(shifted[2]), c)
    return PooledStat(moments, quartiles, (), (), hid > 0, False)
