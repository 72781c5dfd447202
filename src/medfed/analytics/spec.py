"""What a study asks for: the columns of the feature matrix and the statistics spec.

The spec fixes the histogram bin edges of every continuous feature, for every site: histograms
only add up across sites when their bins are identical, and fixed edges mean no site ever reveals
its own minimum or maximum (DataSHIELD's ``ds.histogram`` likewise never returns raw extremes).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from medfed.errors import ConfigError

DEFAULT_K = 5
"""The threshold a hospital gets without asking (DataSHIELD's ``nfilter.tab`` default is 3,
OHDSI's ``minCellCount`` is commonly 5; we take the stricter)."""

MIN_K = 3
"""No site may set k below this: a released 1 or 2 identifies a person in most cohorts."""


class ColumnKind(StrEnum):
    """How a feature column is summarized."""

    CONTINUOUS = "continuous"
    BINARY = "binary"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Column:
    """One column of the feature matrix.

    Categorical and binary columns hold level codes ``0 .. len(levels) - 1`` as floats, NaN when
    missing; continuous columns hold the value, NaN when missing. A binary column without levels
    gets ``("no", "yes")``.
    """

    name: str
    kind: ColumnKind
    levels: tuple[str, ...] = ()

    def level_names(self) -> tuple[str, ...]:
        if self.kind is ColumnKind.BINARY and not self.levels:
            return ("no", "yes")
        return self.levels


def check_k(k: int) -> int:
    """Return k if a site may use it; refuse anything below ``MIN_K``."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise ConfigError(f"disclosure threshold k must be an integer, got {k!r}")
    if k < MIN_K:
        raise ConfigError(
            f"disclosure threshold k={k} is below the floor of {MIN_K}: "
            f"a site may raise k but never lower it under {MIN_K}"
        )
    return k


@dataclass(frozen=True)
class StatsSpec:
    """The statistics a study asks every site for.

    ``bins`` maps each continuous feature to its strictly increasing, finite bin edges; values
    below the first or above the last edge fall into open-ended under/overflow bins. ``group``
    names a binary or categorical column to stratify by (e.g. the outcome). ``k_floor`` is the
    study's minimum threshold: a site uses ``max(its own k, k_floor)``. ``attrition`` names the
    cohort's steps in order when the dataset is pinned by a cohort spec (``data.omop.features.
    attrition_names`` derives them from the spec alone): every site's chain must carry exactly
    these steps, and a secure query lays out one slot per step (secure_table.py).
    """

    bins: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    group: str | None = None
    k_floor: int = MIN_K
    attrition: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_k(self.k_floor)
        frozen = {name: tuple(float(e) for e in edges) for name, edges in self.bins.items()}
        for name, edges in frozen.items():
            if len(edges) < 2:
                raise ConfigError(f"bins of {name!r} need at least two edges")
            if not all(math.isfinite(e) for e in edges):
                raise ConfigError(f"bins of {name!r} must be finite")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ConfigError(f"bins of {name!r} must be strictly increasing")
        object.__setattr__(self, "bins", frozen)
        steps = tuple(self.attrition)
        if not all(isinstance(step, str) and step for step in steps):
            raise ConfigError("attrition steps must be non-empty names")
        object.__setattr__(self, "attrition", steps)

    def effective_k(self, site_k: int) -> int:
        return max(check_k(site_k), self.k_floor)

    def check_columns(self, columns: tuple[Column, ...]) -> None:
        """Refuse a spec that does not fit the columns: every continuous feature needs bins."""
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ConfigError("column names must be unique")
        by_name = {c.name: c for c in columns}
        for c in columns:
            if c.kind is ColumnKind.CONTINUOUS and c.name not in self.bins:
                raise ConfigError(f"continuous column {c.name!r} has no bins in the spec")
            if c.kind is ColumnKind.CATEGORICAL and len(c.levels) < 2:
                raise ConfigError(f"categorical column {c.name!r} needs at least two levels")
        unknown = set(self.bins) - set(by_name)
        if unknown:
            raise ConfigError(f"bins given for unknown columns: {sorted(unknown)}")
        if self.group is not None:
            group = by_name.get(self.group)
            if group is None or group.kind is ColumnKind.CONTINUOUS:
                raise ConfigError(f"group {self.group!r} must be a binary or categorical column")

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "bins": {name: list(edges) for name, edges in sorted(self.bins.items())},
            "group": self.group,
            "k_floor": self.k_floor,
        }
        if self.attrition:  # absent when unused, so earlier queries keep their fingerprint
            doc["attrition"] = list(self.attrition)
        return doc

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> StatsSpec:
        bins = raw.get("bins", {})
        group = raw.get("group")
        k_floor = raw.get("k_floor", MIN_K)
        steps = raw.get("attrition", [])
        if not isinstance(bins, dict) or not isinstance(k_floor, int):
            raise ConfigError("stats spec: 'bins' must be a mapping and 'k_floor' an integer")
        if group is not None and not isinstance(group, str):
            raise ConfigError("stats spec: 'group' must be a column name")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ConfigError("stats spec: 'attrition' must be a list of step names")
        return cls(
            bins={str(n): tuple(float(e) for e in edges) for n, edges in bins.items()},
            group=group,
            k_floor=k_floor,
            attrition=tuple(steps),
        )

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: every site of a study must summarize under one spec."""
        return _sha256(self.to_json())

    def bins_fingerprint(self) -> str:
        """SHA-256 of the bin edges alone: the release log pins a study to one set of bins."""
        return _sha256(self.to_json()["bins"])


def _sha256(doc: object) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
