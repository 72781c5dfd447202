"""Table 1: the descriptive table of a clinical paper, per site and pooled.

Pooled numbers are sums (or Chan combinations) of what sites released, nothing else, so they can
never reveal a cell a site hid. Where any site hid its part of a count, the pooled count is the sum
of the released parts and is marked ``exact=False``: a lower bound, never a value re-derived from
margins. Pooled moments and quartiles use the sites that released them and say which.
"""

from __future__ import annotations

from dataclasses import dataclass

from medfed.analytics.histogram import Quantile
from medfed.analytics.moments import Moments


@dataclass(frozen=True)
class PooledCount:
    """Sum of the released site counts; ``exact`` is False when some site hid its part."""

    value: int | None
    exact: bool


@dataclass(frozen=True)
class CountLine:
    """One level (or the present / missing line of a continuous feature).

    ``per_site[s][c]`` is site s's count in column c (None = hidden); ``pooled[c]`` the sum.
    """

    level: str
    per_site: tuple[tuple[int | None, ...], ...]
    pooled: tuple[PooledCount, ...]


@dataclass(frozen=True)
class CategoricalBlock:
    name: str
    kind: str
    lines: tuple[CountLine, ...]


@dataclass(frozen=True)
class Quartiles:
    """Q1, median and Q3 from a histogram, each with the interval it is known to lie in."""

    q1: Quantile
    median: Quantile
    q3: Quantile


@dataclass(frozen=True)
class PooledStat:
    """A pooled statistic over ``sites``; ``partial`` when another site had rows it withheld."""

    moments: Moments | None
    quartiles: Quartiles | None
    moment_sites: tuple[str, ...]
    quartile_sites: tuple[str, ...]
    moments_partial: bool
    quartiles_partial: bool


@dataclass(frozen=True)
class ContinuousBlock:
    name: str
    present: CountLine
    missing: CountLine
    site_moments: tuple[tuple[Moments | None, ...], ...]
    site_quartiles: tuple[tuple[Quartiles | None, ...], ...]
    pooled: tuple[PooledStat, ...]


@dataclass(frozen=True)
class AttritionLine:
    """One cohort step: persons left and removed, per site and pooled."""

    name: str
    per_site: tuple[tuple[int | None, int | None], ...]
    pooled: tuple[PooledCount, PooledCount]


@dataclass(frozen=True)
class Table1:
    """Per-site and pooled descriptive statistics of one study's cohort."""

    sites: tuple[str, ...]
    columns: tuple[str, ...]
    k: tuple[int, ...]
    spec_fingerprint: str
    totals: CountLine
    attrition: tuple[AttritionLine, ...]
    features: tuple[CategoricalBlock | ContinuousBlock, ...]
    withheld: tuple[tuple[str, str], ...]
