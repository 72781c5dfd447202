"""Table 1 under secure aggregation: one fixed vector per site, only its sum is ever seen.

SecAgg+ sums vectors of one length whose meaning every party agrees on before any data is read,
so the layout follows from the query alone, identical at every site: the study's named features
(a feature with bins in the StatsSpec is continuous, any other is binary, as ``node.stats``
decides), and the columns ``overall`` plus, with a group, ``<group>=no``, ``<group>=yes`` and
``<group>=(missing)`` (a stratum a site does not have counts 0 there: a true count, not a hidden
one). Each block is a part of ``wire.additive``: counts with suppressed cells as 0 next to a
``#hidden`` indicator, and continuous moments as shifted sums ``(n, S1, S2)``. A site's
disclosure control runs first; a feature it withheld contributes 0 with every indicator 1.

What does not travel: merged histograms (each site merges its own bins, so they do not add: no
quartiles) and the cohort's attrition steps (their names come from the site's cohort run). The
pooled Table 1 has no per-site columns; a pooled count is a lower bound where any indicator sum
is above 0, and absent where every site hid it, as ``combine`` reports clear summaries.

Words: each value is fixed point (``FRACTION_BITS``) as a signed 64-bit integer split into four
16-bit limbs, one per uint32 word; the words sum mod 2^32 without carry loss for up to 2^16
sites, and the limbs reassemble the exact 64-bit sum. Counts are therefore exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.analytics.moments import Moments, from_shifted
from medfed.analytics.spec import ColumnKind, StatsSpec
from medfed.analytics.summary import (
    MISSING,
    CategoricalSummary,
    ContinuousSummary,
    SiteSummary,
)
from medfed.analytics.table1 import (
    CategoricalBlock,
    ContinuousBlock,
    CountLine,
    PooledCount,
    PooledStat,
    Table1,
)
from medfed.analytics.wire import additive, centre
from medfed.errors import ConfigError

FRACTION_BITS = 20
LIMBS = 4
LIMB_BITS = 16
_LIMIT = float(2**62)
BINARY_LEVELS = ("no", "yes", MISSING)

Floats = npt.NDArray[np.float64]
Words = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class Layout:
    """The secure vector's blocks, in order: (key of ``wire.additive``, shape)."""

    columns: tuple[str, ...]
    features: tuple[tuple[str, ColumnKind], ...]
    blocks: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.blocks)

    @property
    def words(self) -> int:
        return LIMBS * self.size


def layout(spec: StatsSpec, features: Sequence[str]) -> Layout:
    """The layout of a secure statistics query over ``features`` (the group joins if absent)."""
    if not features:
        raise ConfigError("a secure statistics query must name its features")
    names = [f for f in dict.fromkeys(features) if f != spec.group]  # the group is the strata
    if spec.group is not None and spec.group in spec.bins:
        raise ConfigError(f"group {spec.group!r} must be binary, it has bins")
    g = spec.group
    columns = ("overall",) if g is None else ("overall", *(f"{g}={v}" for v in BINARY_LEVELS))
    c = len(columns)
    blocks: list[tuple[str, tuple[int, ...]]] = [("totals", (c,)), ("totals#hidden", (c,))]
    kinds: list[tuple[str, ColumnKind]] = []
    for name in names:
        if name in spec.bins:
            kinds.append((name, ColumnKind.CONTINUOUS))
            for key, shape in (("count", (2, c)), ("shifted", (c, 3))):
                blocks += [(f"cont/{name}/{key}", shape), (f"cont/{name}/{key}#hidden", shape)]
        else:
            kinds.append((name, ColumnKind.BINARY))
            shape = (len(BINARY_LEVELS), c)
            blocks += [(f"cat/{name}", shape), (f"cat/{name}#hidden", shape)]
    return Layout(columns, tuple(kinds), tuple(blocks))


def site_vector(summary: SiteSummary, spec: StatsSpec, lay: Layout) -> Floats:
    """A site's released summary in ``lay``'s order (the values its SecAgg+ input encodes)."""
    for f in summary.features:
        if isinstance(f, CategoricalSummary) and tuple(r.level for r in f.rows) != BINARY_LEVELS:
            raise ConfigError(f"{f.name!r} is not a binary no/yes column")
    parts = additive(summary, spec)
    hold_rows = _holds_rows(summary)
    where = [lay.columns.index(col) if col in lay.columns else -1 for col in summary.columns]
    if -1 in where:
        raise ConfigError(f"the site's strata {summary.columns} do not fit {lay.columns}")
    if spec.group is not None and len(where) < len(lay.columns) - 1:  # every level is released
        raise ConfigError(f"the site's strata {summary.columns} do not fit {lay.columns}")
    out: list[Floats] = []
    for key, shape in lay.blocks:
        block = np.zeros(shape, dtype=np.float64)
        base = key.removesuffix("#hidden")
        mine = parts.get(key)
        if mine is None:  # a feature the site withheld: nothing released, every cell hidden
            if key.endswith("#hidden"):
                block[...] = 1.0
            out.append(block.ravel())
            continue
        if base.endswith("/shifted"):
            mine = mine.reshape(len(summary.columns), -1)
            if key.endswith("#hidden"):  # a stratum with no rows hides no moments
                mine = mine * hold_rows[base.split("/")[1]][:, None]
            block[where, :] = mine
        elif mine.shape[:-1] != shape[:-1]:
            raise ConfigError(f"{key} has shape {mine.shape}, the layout {shape}")
        else:
            block[..., where] = mine
        out.append(block.ravel())
    return np.concatenate(out)


def _holds_rows(summary: SiteSummary) -> dict[str, Floats]:
    return {
        f.name: np.array([0.0 if p == 0 else 1.0 for p in f.present])
        for f in summary.features
        if isinstance(f, ContinuousSummary)
    }


def to_words(values: Floats) -> Words:
    """Fixed point in four 16-bit limbs per value (refuses what does not fit in 62 bits)."""
    scaled = np.round(np.asarray(values, dtype=np.float64) * 2.0**FRACTION_BITS)
    if not np.isfinite(scaled).all() or np.any(np.abs(scaled) >= _LIMIT):
        raise ConfigError("a statistics value is too large for the secure encoding")
    unsigned = scaled.astype(np.int64).view(np.uint64)
    mask = np.uint64(2**LIMB_BITS - 1)
    limbs = [(unsigned >> np.uint64(LIMB_BITS * i)) & mask for i in range(LIMBS)]
    return np.stack(limbs, axis=1).ravel().astype(np.uint32)


def from_words(words: Words) -> Floats:
    """Inverse of ``to_words`` after summing across sites (mod 2^32 per word)."""
    limbs = np.asarray(words, dtype=np.uint64).reshape(-1, LIMBS)
    total = np.zeros(len(limbs), dtype=np.uint64)
    for i in range(LIMBS):  # wraps mod 2^64, as the two's complement sum does
        total += limbs[:, i] << np.uint64(LIMB_BITS * i)
    return total.view(np.int64).astype(np.float64) / 2.0**FRACTION_BITS


def split(vector: Floats, lay: Layout) -> dict[str, Floats]:
    """The summed vector back into ``lay``'s named blocks."""
    if vector.shape != (lay.size,):
        raise ConfigError(f"a secure statistics sum has {vector.shape}, the layout {lay.size}")
    out: dict[str, Floats] = {}
    at = 0
    for key, shape in lay.blocks:
        n = int(np.prod(shape))
        out[key] = vector[at : at + n].reshape(shape)
        at += n
    return out


def pooled_table(sums: Floats, spec: StatsSpec, lay: Layout, sites: int) -> Table1:
    """The pooled-only Table 1 of ``sites`` sites' summed vectors (no per-site columns)."""
    parts = split(sums, lay)
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
        count, hidden = parts[f"cont/{name}/count"], parts[f"cont/{name}/count#hidden"]
        shifted, unreleased = parts[f"cont/{name}/shifted"], parts[f"cont/{name}/shifted#hidden"]
        c = centre(spec, name)
        stats = tuple(
            _stat(shifted[col], unreleased[col, 0], c, sites) for col in range(len(lay.columns))
        )
        features.append(
            ContinuousBlock(
                name=name,
                present=_line("present", count[0], hidden[0], sites),
                missing=_line("missing", count[1], hidden[1], sites),
                site_moments=(),
                site_quartiles=(),
                pooled=stats,
            )
        )
    return Table1(
        sites=(),
        columns=lay.columns,
        k=(),
        spec_fingerprint=spec.fingerprint(),
        totals=_line("N", parts["totals"], parts["totals#hidden"], sites),
        attrition=(),
        features=tuple(features),
        withheld=(),
    )


def _line(level: str, values: Floats, hidden: Floats, sites: int) -> CountLine:
    pooled = tuple(
        PooledCount(None if round(h) >= sites else round(v), round(h) == 0)
        for v, h in zip(values, hidden, strict=True)
    )
    return CountLine(level, (), pooled)


def _stat(shifted: Floats, unreleased: float, c: float, sites: int) -> PooledStat:
    hid = round(unreleased)
    moments: Moments | None = None
    if hid < sites and round(shifted[0]) > 0:
        moments = from_shifted(float(shifted[0]), float(shifted[1]), float(shifted[2]), c)
    return PooledStat(moments, None, (), (), hid > 0, True)
