"""Combine the sites' released summaries into Table 1 (runs at the coordinator).

Only released numbers are used: counts are summed (a hidden part makes the pooled count a lower
bound), moments pooled by Chan et al.'s update (moments.py), histograms pooled on the spec's
fine boundaries, where each site's count below a boundary is exact or bounded (histogram.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from medfed.analytics.histogram import Histogram, quantiles
from medfed.analytics.moments import Moments, pool
from medfed.analytics.spec import StatsSpec
from medfed.analytics.summary import (
    CategoricalSummary,
    ContinuousSummary,
    FeatureSummary,
    SiteSummary,
)
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
from medfed.errors import ConfigError

Cells = tuple[int | None, ...]


def combine(summaries: Sequence[SiteSummary], spec: StatsSpec) -> Table1:
    """Per-site and pooled Table 1 from released summaries of the same spec."""
    _check(summaries, spec)
    first = summaries[0]
    sites = tuple(s.site for s in summaries)
    names = [f.name for f in first.features]
    for s in summaries[1:]:
        names += [f.name for f in s.features if f.name not in names]
    features: list[CategoricalBlock | ContinuousBlock] = []
    for name in names:
        parts = [_feature(s, name) for s in summaries]
        template = next(p for p in parts if p is not None)
        if isinstance(template, CategoricalSummary):
            features.append(_categorical(template, parts, len(first.columns)))
        else:
            features.append(_continuous(name, parts, sites, spec, len(first.columns)))
    return Table1(
        sites=sites,
        columns=first.columns,
        k=tuple(s.k for s in summaries),
        spec_fingerprint=first.spec_fingerprint,
        totals=_line("N", [s.totals for s in summaries]),
        attrition=_attrition(summaries),
        features=tuple(features),
        withheld=tuple((s.site, name) for s in summaries for name in s.withheld),
    )


def standardization(table: Table1) -> dict[str, tuple[float, float]]:
    """Pooled overall (mean, std) per continuous feature: federated standardization.

    A study uses these instead of each site's own statistics; a feature whose pooled moments are
    missing or partial is refused, because standardizing with part of the data is silently wrong.
    """
    out: dict[str, tuple[float, float]] = {}
    for block in table.features:
        if isinstance(block, ContinuousBlock):
            stat = block.pooled[0]
            if stat.moments is None or stat.moments_partial:
                raise ConfigError(f"no complete pooled moments for {block.name!r}")
            out[block.name] = (stat.moments.mean, stat.moments.std)
    return out


def _check(summaries: Sequence[SiteSummary], spec: StatsSpec) -> None:
    if not summaries:
        raise ConfigError("no site summaries to combine")
    fingerprints = {s.spec_fingerprint for s in summaries}
    if fingerprints != {spec.fingerprint()}:
        raise ConfigError("site summaries were computed under a different stats spec")
    if len({s.site for s in summaries}) != len(summaries):
        raise ConfigError("each site may contribute one summary")
    if len({s.columns for s in summaries}) != 1:
        raise ConfigError("sites disagree on the strata columns (group levels)")
    if len({tuple(step.name for step in s.attrition) for s in summaries}) != 1:
        raise ConfigError("sites disagree on the cohort's attrition steps")


def _feature(summary: SiteSummary, name: str) -> FeatureSummary | None:
    return next((f for f in summary.features if f.name == name), None)


def _pooled(cells: Sequence[int | None]) -> PooledCount:
    shown = [c for c in cells if c is not None]
    return PooledCount(sum(shown) if shown else None, len(shown) == len(cells))


def _line(level: str, per_site: Sequence[Cells]) -> CountLine:
    columns = zip(*per_site, strict=True)
    return CountLine(level, tuple(per_site), tuple(_pooled(col) for col in columns))


def _categorical(
    template: CategoricalSummary, parts: Sequence[FeatureSummary | None], n_cols: int
) -> CategoricalBlock:
    hidden: Cells = (None,) * n_cols
    lines = []
    for i, row in enumerate(template.rows):
        per_site = [p.rows[i].cells if isinstance(p, CategoricalSummary) else hidden for p in parts]
        lines.append(_line(row.level, per_site))
    return CategoricalBlock(template.name, template.kind.value, tuple(lines))


def _continuous(
    name: str,
    parts: Sequence[FeatureSummary | None],
    sites: tuple[str, ...],
    spec: StatsSpec,
    n_cols: int,
) -> ContinuousBlock:
    edges = spec.bins[name]
    conts = [p if isinstance(p, ContinuousSummary) else None for p in parts]
    hidden: Cells = (None,) * n_cols
    none_m: tuple[Moments | None, ...] = (None,) * n_cols
    site_quartiles = tuple(
        tuple(_quartiles([h] if (h := _histogram(c, col)) else [], edges) for col in range(n_cols))
        for c in conts
    )
    return ContinuousBlock(
        name=name,
        present=_line("present", [c.present if c else hidden for c in conts]),
        missing=_line("missing", [c.missing if c else hidden for c in conts]),
        site_moments=tuple(c.moments if c else none_m for c in conts),
        site_quartiles=site_quartiles,
        pooled=tuple(_pooled_stat(conts, sites, edges, col) for col in range(n_cols)),
    )


def _pooled_stat(
    conts: Sequence[ContinuousSummary | None],
    sites: tuple[str, ...],
    edges: tuple[float, ...],
    col: int,
) -> PooledStat:
    def holds_rows(c: ContinuousSummary | None) -> bool:
        return c is None or c.present[col] != 0

    m_idx = [i for i, c in enumerate(conts) if c is not None and c.moments[col] is not None]
    h_idx = [i for i, c in enumerate(conts) if c is not None and c.histogram[col] is not None]
    moments = pool([m for i in m_idx if (m := _moment(conts[i], col)) is not None])
    hists = [_histogram(conts[i], col) for i in h_idx]
    quartiles = _quartiles([h for h in hists if h is not None], edges)
    return PooledStat(
        moments=moments if m_idx else None,
        quartiles=quartiles,
        moment_sites=tuple(sites[i] for i in m_idx),
        quartile_sites=tuple(sites[i] for i in h_idx),
        moments_partial=any(holds_rows(c) for i, c in enumerate(conts) if i not in m_idx),
        quartiles_partial=any(holds_rows(c) for i, c in enumerate(conts) if i not in h_idx),
    )


def _histogram(c: ContinuousSummary | None, col: int) -> Histogram | None:
    if c is None:
        return None
    counts = c.histogram[col]
    return None if counts is None else (counts, c.boundaries)


def _moment(c: ContinuousSummary | None, col: int) -> Moments | None:
    return c.moments[col] if c is not None else None


def _quartiles(histograms: Sequence[Histogram], edges: tuple[float, ...]) -> Quartiles | None:
    if not histograms:
        return None
    q1, med, q3 = quantiles(histograms, edges, (0.25, 0.5, 0.75))
    if q1 is None or med is None or q3 is None:
        return None
    return Quartiles(q1, med, q3)


def _attrition(summaries: Sequence[SiteSummary]) -> tuple[AttritionLine, ...]:
    lines = []
    for i, step in enumerate(summaries[0].attrition):
        per_site = tuple((s.attrition[i].count, s.attrition[i].removed) for s in summaries)
        pooled = (_pooled([p[0] for p in per_site]), _pooled([p[1] for p in per_site]))
        lines.append(AttritionLine(step.name, per_site, pooled))
    return tuple(lines)
