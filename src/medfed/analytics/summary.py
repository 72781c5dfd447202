"""What one site releases for Table 1, after disclosure control. Nothing else leaves the site.

Columns are ``("overall", <stratum>, ...)``: the overall column first, then one per level of the
spec's group column. Every count is an int, or None where the site suppressed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from medfed.analytics.moments import Moments
from medfed.analytics.spec import ColumnKind

MISSING = "(missing)"
"""The row label of missing values in every feature table."""


@dataclass(frozen=True)
class CountRow:
    """One level of a categorical or binary feature: a count per column."""

    level: str
    cells: tuple[int | None, ...]


@dataclass(frozen=True)
class CategoricalSummary:
    """Counts per level (the last row is ``MISSING``) per column."""

    name: str
    kind: ColumnKind
    rows: tuple[CountRow, ...]


@dataclass(frozen=True)
class ContinuousSummary:
    """A continuous feature: present/missing counts, moments and a merged histogram per column.

    ``moments[c]`` is None where column c's present count is hidden or 0. ``boundaries`` are the
    merged bins over the spec's fine bins (see histogram.py); ``histogram[c]`` holds a count per
    merged bin, or None where column c is withheld. No minimum or maximum is ever included.
    """

    name: str
    present: tuple[int | None, ...]
    missing: tuple[int | None, ...]
    moments: tuple[Moments | None, ...]
    boundaries: tuple[int, ...]
    histogram: tuple[tuple[int, ...] | None, ...]


FeatureSummary = CategoricalSummary | ContinuousSummary


@dataclass(frozen=True)
class AttritionStep:
    """Persons left after a cohort step and persons that step removed (None where hidden)."""

    name: str
    count: int | None
    removed: int | None


@dataclass(frozen=True)
class SiteSummary:
    """A site's releasable Table 1 contribution.

    ``totals`` are the cohort size and the stratum sizes (always >= k, or a stratum of 0).
    ``withheld`` names features the site could not protect and so released nothing about.
    """

    site: str
    k: int
    spec_fingerprint: str
    columns: tuple[str, ...]
    totals: tuple[int, ...]
    attrition: tuple[AttritionStep, ...]
    features: tuple[FeatureSummary, ...]
    withheld: tuple[str, ...] = ()
