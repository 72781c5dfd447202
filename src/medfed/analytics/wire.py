"""A SiteSummary as named float64 arrays plus JSON metadata: what the integrator sends.

No pickle: arrays travel through the project's tensor codec (dtype + shape + raw bytes), the
metadata as JSON. Every value is finite, so the codec's ``check_finite`` accepts the message: a
hidden count is ``HIDDEN`` (-1; counts are never negative). Keys:

    totals                 (C,)        cohort and stratum sizes
    attrition              (S, 2)      persons left, removed, per step
    cat/<feature>          (L + 1, C)  counts per level, last row missing
    cont/<feature>/count   (2, C)      present, missing
    cont/<feature>/moments (C, 4)      released (1 or 0), n, mean, M2 (zeros where withheld)
    cont/<feature>/hist    (M, C)      counts per merged bin (HIDDEN column where withheld)

Secure aggregation sums vectors across sites, so ``additive`` gives the parts that add: every
count with hidden cells as 0 plus a ``#hidden`` indicator (its sum is how many sites hid the cell,
so the pooled cell is exact only where that sum is 0), and moments as shifted sums ``(n, S1, S2)``
about the spec's bin-range centre (moments.shifted). Merged histograms do not add (each site
merges its own bins); under secure aggregation a site adds its counts in the spec's fixed fine
bins instead, and the coordinator protects their pooled sum (secure_table.py, secure_release.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from medfed.analytics.moments import Moments, shifted
from medfed.analytics.spec import ColumnKind, StatsSpec
from medfed.analytics.summary import (
    AttritionStep,
    CategoricalSummary,
    ContinuousSummary,
    CountRow,
    FeatureSummary,
    SiteSummary,
)
from medfed.errors import ProtocolError

Arrays = dict[str, npt.NDArray[np.float64]]
ArraysIn = Mapping[str, npt.NDArray[np.float64]]
WIRE_VERSION = 1
HIDDEN = -1.0


def _f(cells: tuple[int | None, ...]) -> list[float]:
    return [HIDDEN if c is None else float(c) for c in cells]


def to_arrays(summary: SiteSummary) -> tuple[Arrays, dict[str, Any]]:
    """Arrays and JSON-ready metadata of one site's summary."""
    arrays: Arrays = {"totals": np.array(summary.totals, dtype=np.float64)}
    arrays["attrition"] = np.array(
        [_f((s.count, s.removed)) for s in summary.attrition], dtype=np.float64
    ).reshape(-1, 2)
    features: list[dict[str, Any]] = []
    for f in summary.features:
        if isinstance(f, CategoricalSummary):
            arrays[f"cat/{f.name}"] = np.array([_f(r.cells) for r in f.rows], dtype=np.float64)
            levels = [r.level for r in f.rows]
            features.append({"name": f.name, "kind": f.kind.value, "levels": levels})
            continue
        arrays[f"cont/{f.name}/count"] = np.array([_f(f.present), _f(f.missing)])
        arrays[f"cont/{f.name}/moments"] = np.array(
            [[1.0, m.n, m.mean, m.m2] if m else [0.0] * 4 for m in f.moments], dtype=np.float64
        )
        bins = len(f.boundaries) - 1
        hist = np.full((bins, len(f.histogram)), HIDDEN)
        for c, counts in enumerate(f.histogram):
            if counts is not None:
                hist[:, c] = counts
        arrays[f"cont/{f.name}/hist"] = hist
        features.append({"name": f.name, "kind": "continuous", "boundaries": list(f.boundaries)})
    meta = {
        "version": WIRE_VERSION,
        "site": summary.site,
        "k": summary.k,
        "spec": summary.spec_fingerprint,
        "columns": list(summary.columns),
        "attrition": [s.name for s in summary.attrition],
        "features": features,
        "withheld": list(summary.withheld),
    }
    return arrays, meta


def from_arrays(
    arrays: Mapping[str, npt.NDArray[np.float64]], meta: Mapping[str, Any]
) -> SiteSummary:
    """Inverse of ``to_arrays``; a malformed message raises ProtocolError."""
    try:
        if meta["version"] != WIRE_VERSION:
            raise ProtocolError(f"stats summary version {meta['version']} is not {WIRE_VERSION}")
        n_cols = len(meta["columns"])
        totals = _ints(arrays["totals"], (n_cols,), hidden_ok=False)
        steps = _ints(arrays["attrition"], (len(meta["attrition"]), 2), hidden_ok=True)
        attrition = tuple(
            AttritionStep(str(name), row[0], row[1])
            for name, row in zip(meta["attrition"], _rows(steps, 2), strict=True)
        )
        features = tuple(_feature(arrays, f, n_cols) for f in meta["features"])
        return SiteSummary(
            site=str(meta["site"]),
            k=int(meta["k"]),
            spec_fingerprint=str(meta["spec"]),
            columns=tuple(str(c) for c in meta["columns"]),
            totals=tuple(t for t in totals if t is not None),
            attrition=attrition,
            features=features,
            withheld=tuple(str(w) for w in meta["withheld"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed stats summary: {exc!r}") from exc


def _feature(
    arrays: Mapping[str, npt.NDArray[np.float64]], f: Mapping[str, Any], n_cols: int
) -> FeatureSummary:
    name = str(f["name"])
    if f["kind"] != "continuous":
        levels = [str(level) for level in f["levels"]]
        cells = _ints(arrays[f"cat/{name}"], (len(levels), n_cols), hidden_ok=True)
        rows = tuple(CountRow(lv, r) for lv, r in zip(levels, _rows(cells, n_cols), strict=True))
        return CategoricalSummary(name, ColumnKind(f["kind"]), rows)
    bounds = tuple(int(b) for b in f["boundaries"])
    present, missing = _rows(
        _ints(arrays[f"cont/{name}/count"], (2, n_cols), hidden_ok=True), n_cols
    )
    raw = np.asarray(arrays[f"cont/{name}/moments"], dtype=np.float64)
    if raw.shape != (n_cols, 4) or not np.isfinite(raw).all():
        raise ProtocolError(f"moments of {name!r} have shape {raw.shape} or are not finite")
    moments = tuple(
        Moments(int(row[1]), float(row[2]), float(row[3])) if row[0] == 1.0 else None for row in raw
    )
    hist = np.asarray(arrays[f"cont/{name}/hist"], dtype=np.float64)
    if hist.shape != (len(bounds) - 1, n_cols):
        raise ProtocolError(f"histogram of {name!r} has shape {hist.shape}")
    cells = _ints(hist, hist.shape, hidden_ok=True)
    columns = [cells[c::n_cols] for c in range(n_cols)]
    histogram = tuple(
        None if None in col else tuple(v for v in col if v is not None) for col in columns
    )
    return ContinuousSummary(name, present, missing, moments, bounds, histogram)


def _ints(
    raw: npt.NDArray[np.float64], shape: tuple[int, ...], *, hidden_ok: bool
) -> list[int | None]:
    """Flattened counts, None for HIDDEN; refuse wrong shapes, negatives and fractions."""
    a = np.asarray(raw, dtype=np.float64)
    if a.shape != shape:
        raise ProtocolError(f"expected shape {shape}, got {a.shape}")
    flat = a.ravel()
    hidden = flat == HIDDEN
    if hidden.any() and not hidden_ok:
        raise ProtocolError("a count that must be released is missing")
    shown = flat[~hidden]
    if np.any(~np.isfinite(shown)) or np.any(shown < 0) or np.any(shown != np.round(shown)):
        raise ProtocolError("counts must be non-negative integers (or -1 where hidden)")
    return [None if h else int(v) for v, h in zip(flat, hidden, strict=True)]


def _rows(flat: list[int | None], width: int) -> list[tuple[int | None, ...]]:
    return [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]


def centre(spec: StatsSpec, feature: str) -> float:
    """The shift for additive moments: the middle of the feature's bin range."""
    edges = spec.bins[feature]
    return (edges[0] + edges[-1]) / 2


def additive(summary: SiteSummary, spec: StatsSpec) -> Arrays:
    """The parts of a summary that add across sites (secure aggregation's input)."""
    arrays, _ = to_arrays(summary)
    out: Arrays = {}
    for key, a in arrays.items():
        if key.endswith(("/moments", "/hist")):
            continue
        out[key] = np.where(a == HIDDEN, 0.0, a)
        out[f"{key}#hidden"] = (a == HIDDEN).astype(np.float64)
    for f in summary.features:
        if isinstance(f, ContinuousSummary):
            c = centre(spec, f.name)
            out[f"cont/{f.name}/shifted"] = np.array(
                [shifted(m, c) if m else (0.0, 0.0, 0.0) for m in f.moments], dtype=np.float64
            )
            out[f"cont/{f.name}/shifted#hidden"] = np.array(
                [0.0 if m else 1.0 for m in f.moments], dtype=np.float64
            )
    return out
