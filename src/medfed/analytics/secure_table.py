"""Table 1 under secure aggregation: one fixed vector per site, only its sum is ever seen.

SecAgg+ sums vectors of one length whose meaning every party agrees on before any data is read,
so the layout follows from the query alone, identical at every site: the study's named features
(a feature with bins in the StatsSpec is continuous, any other is binary, as ``node.stats``
decides), the columns ``overall`` plus, with a group, ``<group>=no``, ``<group>=yes`` and
``<group>=(missing)`` (a stratum a site does not have counts 0 there: a true count, not a hidden
one), and the cohort's attrition steps named in the query (``StatsSpec.attrition``, derived from
the cohort spec the dataset is pinned by, so every site has the same slots).

The vector has two regions. The *released* region holds the parts of a site's disclosure-
controlled summary that add (``wire.additive``): counts with suppressed cells as 0 next to a
``#hidden`` indicator, and continuous moments as shifted sums ``(n, S1, S2)``; a feature the site
withheld contributes 0 with every indicator 1. The *controlled* region holds exact counts whose
sum the coordinator must protect before anything is shown (secure_release.py): per continuous
feature the counts in the spec's fixed fine bins (``hist/<name>``, fine bins x columns: fixed
common bins add, a site's merged ones do not), the persons (entries) left after each attrition
step, and a one-hot of the site's k (slot ``k - MIN_K``; their sum says which k were declared).
Only the protected release of the controlled region is ever stored.

Words: each value is fixed point (``FRACTION_BITS``) as a signed 64-bit integer split into four
16-bit limbs, one per uint32 word; the words sum mod 2^32 without carry loss for up to 2^16
sites, and the limbs reassemble the exact 64-bit sum. Counts are therefore exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.analytics.spec import MIN_K, ColumnKind, StatsSpec
from medfed.analytics.summary import (
    MISSING,
    CategoricalSummary,
    ContinuousSummary,
    SiteSummary,
)
from medfed.analytics.wire import additive
from medfed.errors import ConfigError

FRACTION_BITS = 20
LIMBS = 4
LIMB_BITS = 16
_LIMIT = float(2**62)
BINARY_LEVELS = ("no", "yes", MISSING)
K_SLOTS = 98
MAX_DECLARED_K = MIN_K + K_SLOTS - 1
"""A site declares its k in one of ``K_SLOTS`` slots: k = 3 .. 100 (a higher k is refused)."""

Floats = npt.NDArray[np.float64]
Words = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class Layout:
    """The secure vector's blocks, in order: (key of ``wire.additive``, shape)."""

    columns: tuple[str, ...]
    features: tuple[tuple[str, ColumnKind], ...]
    blocks: tuple[tuple[str, tuple[int, ...]], ...]
    attrition: tuple[str, ...] = ()
    released: int = 0
    """How many leading blocks form the released region (the rest is controlled)."""

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.blocks)

    @property
    def released_size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.blocks[: self.released])

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
    released = len(blocks)
    for name, kind in kinds:
        if kind is ColumnKind.CONTINUOUS:
            blocks.append((f"hist/{name}", (len(spec.bins[name]) + 1, c)))
    if spec.attrition:
        blocks.append(("attrition", (len(spec.attrition),)))
    blocks.append(("k", (K_SLOTS,)))
    return Layout(columns, tuple(kinds), tuple(blocks), spec.attrition, released)


def site_vector(
    summary: SiteSummary,
    spec: StatsSpec,
    lay: Layout,
    fine: Mapping[str, npt.NDArray[np.int64]],
    steps: Sequence[int] = (),
) -> Floats:
    """A site's SecAgg+ input values in ``lay``'s order: its released summary's additive parts,
    then the controlled region from ``fine`` (``site.fine_histograms`` of the same rows, in the
    summary's column order) and ``steps`` (persons left after each attrition step)."""
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
    for key, shape in lay.blocks[: lay.released]:
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
    out += _controlled(summary, lay, where, fine, steps)
    return np.concatenate(out)


def _controlled(
    summary: SiteSummary,
    lay: Layout,
    where: list[int],
    fine: Mapping[str, npt.NDArray[np.int64]],
    steps: Sequence[int],
) -> list[Floats]:
    """The controlled region: fixed-bin counts, attrition counts and the one-hot of k."""
    if not MIN_K <= summary.k <= MAX_DECLARED_K:
        raise ConfigError(f"k={summary.k} cannot be declared in a secure query (at most "
                          f"{MAX_DECLARED_K})")  # fmt: skip
    out: list[Floats] = []
    for key, shape in lay.blocks[lay.released :]:
        block = np.zeros(shape, dtype=np.float64)
        name = key.removeprefix("hist/")
        if key == "k":
            block[summary.k - MIN_K] = 1.0
        elif key == "attrition":
            if len(steps) != shape[0]:
                raise ConfigError(f"{len(steps)} attrition counts for {shape[0]} steps")
            block[:] = steps
        elif name in fine and name not in summary.withheld:  # a withheld feature adds 0
            counts = np.asarray(fine[name])
            if counts.shape != (shape[0], len(where)):
                raise ConfigError(f"fine bins of {name!r} have shape {counts.shape}")
            block[:, where] = counts
        out.append(block.ravel())
    return out


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
    """The summed vector (whole, or its released region alone) back into named blocks."""
    blocks = lay.blocks if vector.shape == (lay.size,) else lay.blocks[: lay.released]
    if vector.shape not in ((lay.size,), (lay.released_size,)):
        raise ConfigError(f"a secure statistics sum has {vector.shape}, the layout {lay.size}")
    out: dict[str, Floats] = {}
    at = 0
    for key, shape in blocks:
        n = int(np.prod(shape))
        out[key] = vector[at : at + n].reshape(shape)
        at += n
    return out
