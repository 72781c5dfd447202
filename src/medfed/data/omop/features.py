"""A spec's feature matrix from the node's OMOP CDM, as the ``TabularDataset`` training plans read.

The order of work is the order a careful analyst would follow, so no test-row value leaks into
training: cohort -> one raw value per feature and entry (NaN where the person has none) -> label
from the outcome -> persons missing a ``drop`` feature leave -> split -> medians taken on the
training rows only and filled into both splits (with a 0/1 missing-indicator column when asked).

Rows are in the cohort's order (person source value, person id, index date): with a stable
source value per patient (the FHIR Patient id) the matrix, and so a seeded split, is the same on
every load of the same records, whatever ids the ETL assigned.

The matrix is cached on disk under a key made of the spec's hash, a fingerprint of the store's
contents and the consent watermark: a round whose data and consent are unchanged reads the file,
a new load or a revocation builds it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from medfed.data.omop.cohort import (
    FEMALE,
    MALE,
    AttritionStep,
    Cohort,
    build_cohort,
    concept_events,
    step_names,
)
from medfed.data.omop.spec import CohortSpec, Feature, SplitRule
from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError

log = logging.getLogger("medfed.data")
Key = tuple[int, dt.date]
Float64Array = npt.NDArray[np.float64]
_CACHE_FORMAT = 1


COMPLETE_STEP = "no feature missing that the spec drops on"
"""The last attrition step of every extraction (after the cohort rule's own steps)."""


def attrition_names(spec: CohortSpec) -> tuple[str, ...]:
    """The attrition steps every extraction of ``spec`` reports, in order, without a database
    (what ``StatsSpec.attrition`` pins a statistics query to)."""
    return (*step_names(spec.cohort), COMPLETE_STEP)


@dataclass(frozen=True)
class Extraction:
    """The dataset and how it came about (what the statistics layer and the round ledger read)."""

    dataset: TabularDataset
    attrition: tuple[AttritionStep, ...]
    spec_sha256: str
    fingerprint: str
    from_cache: bool = False


def extract(
    source: sa.Engine | sa.Connection,
    spec: CohortSpec,
    *,
    cache_dir: Path | None = None,
    watermark: str = "",
) -> Extraction:
    """Build (or read back from ``cache_dir``) the spec's matrix from the CDM behind ``source``.

    ``source`` is the store's engine, or the consent reader's connection (only consented persons
    visible, one snapshot for the whole build); ``watermark`` is that reader's consent-log
    position, part of the cache key.
    """
    if isinstance(source, sa.Engine):
        with source.connect() as conn:
            return _extract(conn, spec, cache_dir, watermark)
    return _extract(source, spec, cache_dir, watermark)


def _extract(
    conn: sa.Connection, spec: CohortSpec, cache_dir: Path | None, watermark: str
) -> Extraction:
    fingerprint = store_fingerprint(conn)
    key = hashlib.sha256(f"{spec.sha256}|{fingerprint}|{watermark}".encode()).hexdigest()
    if cache_dir is not None:
        cached = _read_cache(cache_dir, key, spec, fingerprint)
        if cached is not None:
            return cached
    cohort = build_cohort(conn, spec)
    raw = {f.name: _raw_feature(conn, spec, cohort, f) for f in spec.features}
    labels = _labels(conn, spec, cohort)
    dataset, attrition = assemble(spec, cohort, raw, labels)
    result = Extraction(dataset, attrition, spec.sha256, fingerprint)
    if cache_dir is not None:
        _write_cache(cache_dir, key, result)
    return result


def assemble(
    spec: CohortSpec,
    cohort: Cohort,
    raw: dict[str, Float64Array],
    labels: npt.NDArray[np.float32],
) -> tuple[TabularDataset, tuple[AttritionStep, ...]]:
    """Drop, split and impute the raw per-feature values (rows = cohort entries)."""
    keep = np.ones(len(cohort.entries), dtype=bool)
    for feature in spec.features:
        if feature.missing == "drop":
            keep &= ~np.isnan(raw[feature.name]).any(axis=1)
    persons = len({e.person_id for e, k in zip(cohort.entries, keep, strict=True) if k})
    attrition = (
        *cohort.attrition,
        AttritionStep(COMPLETE_STEP, persons, int(keep.sum())),
    )
    y = labels[keep]
    train = split_rows(spec.split, y)
    x_train: list[Float64Array] = []
    x_test: list[Float64Array] = []
    for feature in spec.features:
        values = raw[feature.name][keep]
        missing = np.asarray(np.isnan(values).any(axis=1), dtype=bool)
        fill = _fill_value(feature, values[train])
        filled = np.where(np.isnan(values), fill, values)
        if feature.indicator:
            filled = np.hstack([filled, missing[:, None].astype(np.float64)])
        x_train.append(filled[train])
        x_test.append(filled[~train])
    width = len(spec.columns)
    dataset = TabularDataset(
        features=spec.columns,
        label=spec.outcome.name,
        x_train=_stack(x_train, width),
        y_train=y[train],
        x_test=_stack(x_test, width),
        y_test=y[~train],
    )
    return dataset, attrition


def split_rows(rule: SplitRule, labels: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Which rows train: FLamby's call for ``stratified`` (the same as the CSV heart path)."""
    train = np.zeros(len(labels), dtype=bool)
    if rule.method == "none" or len(labels) == 0:
        train[:] = True
        return train
    from sklearn.model_selection import train_test_split  # heavy; only when a split is drawn

    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(counts) > 1 and bool((counts > 2).all()) else None
    try:
        chosen, _ = train_test_split(
            np.arange(len(labels)),
            test_size=1.0 - rule.train_fraction,
            train_size=rule.train_fraction,
            random_state=rule.seed,
            shuffle=True,
            stratify=stratify,
        )
    except ValueError as exc:  # too few rows for the fraction
        raise DatasetError(f"cannot split {len(labels)} rows: {exc}") from None
    train[np.asarray(chosen, dtype=np.int64)] = True
    return train


def store_fingerprint(conn: sa.Connection) -> str:
    """A cheap digest of what the feature queries read: per table, the row count and sums of
    ids, concepts, dates' span and values. A re-load that changes any record changes it; it is a
    change detector for the cache, not a cryptographic commitment to the data."""
    from medfed.data.omop.cohort import EVENT_TABLES
    from medfed.data.omop.store import cdm_metadata

    tables = cdm_metadata().tables
    parts: list[str] = []
    watched = [(n, c, d) for n, c, d in EVENT_TABLES] + [
        ("person", "gender_concept_id", "birth_datetime"),
        ("observation_period", "period_type_concept_id", "observation_period_start_date"),
    ]
    for name, concept, date in watched:
        table = tables[name]
        pk = table.c[f"{name}_id"]
        columns: list[Any] = [
            sa.func.count(),
            sa.func.sum(pk),
            sa.func.sum(table.c[concept]),
            sa.func.sum(table.c.person_id),
            sa.func.min(table.c[date]),
            sa.func.max(table.c[date]),
        ]
        if "value_as_number" in table.c:
            columns.append(sa.func.sum(sa.cast(table.c.value_as_number, sa.Float)))
        if name == "person":
            columns.append(sa.func.sum(table.c.year_of_birth))
        row = conn.execute(sa.select(*columns).select_from(table)).one()
        parts.append(f"{name}:" + ",".join(_fingerprint_text(v) for v in row))
    ancestor = tables["concept_ancestor"]
    count = conn.execute(sa.select(sa.func.count()).select_from(ancestor)).scalar_one()
    parts.append(f"concept_ancestor:{count}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fingerprint_text(value: object) -> str:
    if isinstance(value, float):
        return repr(round(value, 6))
    return "" if value is None else str(value)


def _raw_feature(
    conn: sa.Connection, spec: CohortSpec, cohort: Cohort, feature: Feature
) -> Float64Array:
    """Rows x (feature's own columns) float64, NaN where missing."""
    n = len(cohort.entries)
    if feature.kind == "age":
        return np.array(
            [[np.nan if e.age is None else e.age] for e in cohort.entries], dtype=float
        ).reshape(n, 1)
    if feature.kind == "sex":
        sexes = {MALE: 1.0, FEMALE: 0.0}
        return np.array(
            [[sexes.get(e.gender_concept_id or 0, np.nan)] for e in cohort.entries], dtype=float
        ).reshape(n, 1)
    if feature.kind == "categorical":
        return _categorical(conn, spec, cohort, feature)
    values = _values(conn, spec, cohort, feature)
    default = 0.0 if feature.aggregate in ("any", "count") else np.nan
    return np.array(
        [[values.get((e.person_id, e.index_date), default)] for e in cohort.entries], dtype=float
    ).reshape(n, 1)


def _windowed(
    cohort: Cohort, found: sa.Subquery, window: tuple[int, int]
) -> tuple[sa.Subquery, sa.Select[Any]]:
    """Events joined to their cohort entry when they fall in ``window`` days of its index."""
    keys = cohort.query.subquery("cohort")
    offset = found.c.event_date - keys.c.index_date
    select = (
        sa.select(keys.c.person_id, keys.c.index_date)
        .join_from(keys, found, found.c.person_id == keys.c.person_id)
        .where(offset >= window[0], offset <= window[1])
    )
    return keys, select


def _values(
    conn: sa.Connection, spec: CohortSpec, cohort: Cohort, feature: Feature
) -> dict[Key, float]:
    """One number per cohort entry that has events: the spec's aggregate over the window."""
    found = concept_events(conn, spec.concept_set(feature.concept_set))
    keys, joined = _windowed(cohort, found, feature.window)
    value: sa.ColumnElement[Any] = found.c.value
    if feature.value_map:
        mapped = sa.case(
            *(
                (found.c.value_concept == cid, sa.literal(v, sa.Float))
                for cid, v in feature.value_map
            ),
            else_=sa.cast(sa.null(), sa.Float),
        )
        value = sa.func.coalesce(found.c.value, mapped)
    group = (keys.c.person_id, keys.c.index_date)
    if feature.aggregate in ("any", "count"):
        select = joined.add_columns(sa.func.count().label("v")).group_by(*group)
    elif feature.aggregate == "mean":
        select = (
            joined.add_columns(sa.func.avg(value).label("v"))
            .where(value.is_not(None))
            .group_by(*group)
        )
    else:
        ranked = (
            joined.add_columns(
                value.label("v"),
                sa.func.row_number()
                .over(
                    partition_by=group,
                    order_by=(
                        found.c.event_date.desc(),
                        found.c.source.desc(),
                        found.c.event_id.desc(),
                    ),
                )
                .label("rank"),
            )
            .where(value.is_not(None))
            .subquery("ranked")
        )
        select = sa.select(ranked.c.person_id, ranked.c.index_date, ranked.c.v).where(
            ranked.c.rank == 1
        )
    out = {}
    for person_id, index_date, v in conn.execute(select):
        number = float(v)
        out[(int(person_id), _as_date(index_date))] = (
            min(number, 1.0) if feature.aggregate == "any" else number
        )
    return out


def _categorical(
    conn: sa.Connection, spec: CohortSpec, cohort: Cohort, feature: Feature
) -> Float64Array:
    """One-hot of each entry's latest level (first level dropped); NaN rows where none is seen."""
    latest: dict[Key, tuple[dt.date, int]] = {}
    for index, level in enumerate(feature.levels):
        found = concept_events(conn, spec.concept_set(level.concept_set))
        keys, joined = _windowed(cohort, found, feature.window)
        if level.value_concepts:
            joined = joined.where(found.c.value_concept.in_(list(level.value_concepts)))
        select = joined.add_columns(sa.func.max(found.c.event_date)).group_by(
            keys.c.person_id, keys.c.index_date
        )
        for person_id, index_date, day in conn.execute(select):
            key = (int(person_id), _as_date(index_date))
            seen = latest.get(key)
            if seen is None or _as_date(day) > seen[0]:  # ties keep the earlier-listed level
                latest[key] = (_as_date(day), index)
    out = np.full((len(cohort.entries), len(feature.levels) - 1), np.nan)
    for row, entry in enumerate(cohort.entries):
        seen = latest.get((entry.person_id, entry.index_date))
        if seen is not None:
            out[row] = 0.0
            if seen[1] > 0:
                out[row, seen[1] - 1] = 1.0
    return out


def _labels(conn: sa.Connection, spec: CohortSpec, cohort: Cohort) -> npt.NDArray[np.float32]:
    found = concept_events(conn, spec.concept_set(spec.outcome.concept_set))
    _, joined = _windowed(cohort, found, spec.outcome.time_at_risk)
    positive = {(int(p), _as_date(d)) for p, d in conn.execute(joined.distinct())}
    return np.array(
        [1.0 if (e.person_id, e.index_date) in positive else 0.0 for e in cohort.entries],
        dtype=np.float32,
    )


def _fill_value(feature: Feature, train_values: Float64Array) -> float:
    if feature.missing != "median":
        return feature.fill  # "drop" leaves nothing to fill; "constant" fills its value
    present = train_values[~np.isnan(train_values)]
    if present.size == 0:
        raise DatasetError(
            f"feature {feature.name!r}: no training row has a value to take the median of"
        )
    return float(np.median(present))


def _stack(parts: Sequence[Float64Array], width: int) -> npt.NDArray[np.float32]:
    rows = parts[0].shape[0] if parts else 0
    return np.hstack(parts).astype(np.float32) if parts else np.zeros((rows, width), np.float32)


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _read_cache(cache_dir: Path, key: str, spec: CohortSpec, fingerprint: str) -> Extraction | None:
    data_file, meta_file = cache_dir / f"{key}.npz", cache_dir / f"{key}.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        with np.load(data_file, allow_pickle=False) as arrays:  # arrays only, never objects
            dataset = TabularDataset(
                features=tuple(meta["features"]),
                label=str(meta["label"]),
                x_train=arrays["x_train"],
                y_train=arrays["y_train"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
            )
        if meta.get("format") != _CACHE_FORMAT or dataset.features != spec.columns:
            return None
        attrition = tuple(AttritionStep(s, int(p), int(e)) for s, p, e in meta["attrition"])
    except (OSError, ValueError, KeyError, TypeError, DatasetError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("feature cache %s unreadable (%s); rebuilding", data_file, exc)
        return None
    return Extraction(dataset, attrition, spec.sha256, fingerprint, from_cache=True)


def _write_cache(cache_dir: Path, key: str, result: Extraction) -> None:
    """Arrays first, then the JSON that makes them count, each write-then-rename."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("*.npz"):  # one matrix per dataset: the previous key is stale
        if old.stem != key:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    data = result.dataset
    tmp = cache_dir / f".{key}.tmp.npz"
    np.savez(
        tmp, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test
    )
    tmp.replace(cache_dir / f"{key}.npz")
    meta = {
        "format": _CACHE_FORMAT,
        "features": list(data.features),
        "label": data.label,
        "spec_sha256": result.spec_sha256,
        "attrition": [[s.step, s.persons, s.entries] for s in result.attrition],
    }
    tmp_meta = cache_dir / f".{key}.tmp.json"
    tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
    tmp_meta.replace(cache_dir / f"{key}.json")
