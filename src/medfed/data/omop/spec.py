"""A study's cohort and feature spec: who is in, what is predicted, which columns the model sees.

Written once by the researcher as TOML, approved and pinned by each site's data steward by its
SHA-256 (of the canonical JSON of the parsed spec, so whitespace, comments and key order do not
change it), and run by every node against its own OMOP CDM. The shape follows OHDSI's: a target
cohort entered by an event from a concept set (first or every occurrence) and narrowed by inclusion
rules, an outcome concept set with a time-at-risk, and features as concept sets x windows relative
to the index date x aggregation, in the spirit of FeatureExtraction's covariates.

Circe JSON (ATLAS's cohort format) is not read: the spec covers what a tabular training plan needs
(one row a person, fixed columns) and stays small enough to review by eye. A faithful import is not
a field-by-field translation: Circe's age is the difference of years (not whole years at the index
date), its observation window filters events before the first-event limit is taken, and its end
strategy and era collapse decide which of a person's entries survive. Running Circe's own SQL
instead would need temporary and cohort tables, which the node's SELECT-only role under
row-level security cannot create.

A spec looks like this (``medfed/demo/ehr/heart.toml`` is a full one)::

    version = 1
    name = "uci-heart"
    [concept_sets]
    stress_test = { concepts = [4296597] }
    coronary = { concepts = [317576], descendants = true }
    sbp = { concepts = [3004249] }
    [cohort]
    entry = "stress_test"
    occurrence = "first"
    min_age = 18
    [outcome]
    name = "target"
    concept_set = "coronary"
    time_at_risk = [0, 30]
    [[features]]
    name = "age"
    kind = "age"
    [[features]]
    name = "trestbps"
    concept_set = "sbp"
    window = [-30, 0]
    aggregate = "latest"
    missing = "median"
    indicator = true
    [split]
    method = "stratified"
    train_fraction = 0.66
    seed = 43
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from medfed.data.omop.spec_reader import SpecError, SpecReader

__all__ = ["CohortSpec", "SpecError", "load_spec", "parse_spec"]

SPEC_VERSION = 1

Occurrence = Literal["first", "all"]
Sex = Literal["male", "female"]
FeatureKind = Literal["age", "sex", "value", "categorical"]
Aggregate = Literal["any", "count", "latest", "mean"]
Missing = Literal["drop", "median", "constant"]
SplitMethod = Literal["stratified", "none"]


@dataclass(frozen=True)
class ConceptSet:
    """Concept ids; ``descendants`` adds every descendant found in ``concept_ancestor``."""

    name: str
    concepts: tuple[int, ...]
    descendants: bool = False


@dataclass(frozen=True)
class CohortRule:
    """Entry event, which occurrences count, and the inclusion rules applied at the index date."""

    entry: str
    occurrence: Occurrence = "first"
    min_age: int | None = None
    max_age: int | None = None
    sex: tuple[Sex, ...] = ()
    prior_observation_days: int | None = None
    """None: no observation period needed; N: the index date lies in an observation period
    that started at least N days before it."""


@dataclass(frozen=True)
class Outcome:
    """The label: 1 when an event of ``concept_set`` starts ``time_at_risk`` days from index."""

    name: str
    concept_set: str
    time_at_risk: tuple[int, int]


@dataclass(frozen=True)
class Level:
    """One category of a categorical feature: events of ``concept_set``, optionally only those
    whose ``value_as_concept_id`` is in ``value_concepts``."""

    label: str
    concept_set: str
    value_concepts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Feature:
    """One feature; ``value`` and ``categorical`` read events of concept sets in ``window``.

    ``value``: ``any`` (0/1) and ``count`` are never missing; ``latest`` and ``mean`` read
    ``value_as_number``, or ``value_map[value_as_concept_id]`` when the spec maps coded values.
    ``categorical``: the level of the latest matching event (ties: the first level listed),
    one-hot with the first level as the dropped reference, columns ``<name>_<label>``.
    """

    name: str
    kind: FeatureKind
    concept_set: str = ""
    window: tuple[int, int] = (0, 0)
    aggregate: Aggregate = "latest"
    value_map: tuple[tuple[int, float], ...] = ()
    levels: tuple[Level, ...] = ()
    missing: Missing = "drop"
    fill: float = 0.0
    indicator: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """The matrix columns this feature produces, in order."""
        own = (
            tuple(f"{self.name}_{level.label}" for level in self.levels[1:])
            if self.kind == "categorical"
            else (self.name,)
        )
        return own + ((f"{self.name}_missing",) if self.indicator else ())


@dataclass(frozen=True)
class SplitRule:
    """``stratified``: scikit-learn's seeded ``train_test_split`` over the rows in matrix order,
    stratified on the label when each class has more than two rows (FLamby's rule); ``none``:
    every row trains and the test split is empty."""

    method: SplitMethod = "none"
    train_fraction: float = 0.66
    seed: int = 0


@dataclass(frozen=True)
class CohortSpec:
    """A parsed, checked spec. ``sha256`` is what a steward pins."""

    name: str
    concept_sets: tuple[ConceptSet, ...]
    cohort: CohortRule
    outcome: Outcome
    features: tuple[Feature, ...]
    split: SplitRule
    description: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for feature in self.features for column in feature.columns)

    def concept_set(self, name: str) -> ConceptSet:
        for item in self.concept_sets:
            if item.name == name:
                return item
        raise SpecError(f"spec {self.name!r}: no concept set {name!r}")

    def canonical_json(self) -> bytes:
        """Sorted keys, no whitespace, UTF-8: the bytes the hash is taken over."""
        doc = {"version": SPEC_VERSION, **asdict(self)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()


def load_spec(path: Path) -> CohortSpec:
    """Read and check a TOML spec file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, *, source: str = "spec") -> CohortSpec:
    """Parse TOML text into a :class:`CohortSpec`, refusing anything unknown or inconsistent."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({exc})") from None
    reader = SpecReader(source)
    reader.keys(doc, "", {"version", "name", "description", "concept_sets", "cohort", "outcome",
                          "features", "split"})  # fmt: skip
    version = reader.integer(doc, "version", "")
    if version != SPEC_VERSION:
        raise SpecError(f"{source}: version must be {SPEC_VERSION}, got {version}")
    sets = tuple(
        _concept_set(reader, name, body)
        for name, body in reader.table(doc, "concept_sets", "").items()
    )
    spec = CohortSpec(
        name=reader.name(doc, "name", ""),
        description=str(doc.get("description", "")),
        concept_sets=sets,
        cohort=_cohort(reader, reader.table(doc, "cohort", "")),
        outcome=_outcome(reader, reader.table(doc, "outcome", "")),
        features=tuple(
            _feature(reader, body, f"features[{i}]")
            for i, body in enumerate(reader.array(doc, "features", ""))
        ),
        split=_split(reader, doc.get("split", {})),
    )
    _check_references(spec, source)
    return spec


def _concept_set(reader: SpecReader, name: str, body: Any) -> ConceptSet:
    where = f"concept_sets.{name}"
    reader.check_name(name, where)
    if not isinstance(body, dict):
        raise SpecError(f"{reader.source}: {where} must be a table")
    reader.keys(body, where, {"concepts", "descendants"})
    ids = reader.ids(body, "concepts", where)
    if not ids:
        raise SpecError(f"{reader.source}: {where}.concepts is empty")
    return ConceptSet(name, ids, reader.boolean(body, "descendants", where, False))


def _cohort(reader: SpecReader, body: dict[str, Any]) -> CohortRule:
    reader.keys(body, "cohort", {"entry", "occurrence", "min_age", "max_age", "sex",
                                 "prior_observation_days"})  # fmt: skip
    sexes = body.get("sex", [])
    if not isinstance(sexes, list) or any(s not in get_args(Sex) for s in sexes):
        raise SpecError(f"{reader.source}: cohort.sex must be a list of 'male' / 'female'")
    rule = CohortRule(
        entry=reader.name(body, "entry", "cohort"),
        occurrence=cast(
            Occurrence, reader.choice(body, "occurrence", "cohort", Occurrence, "first")
        ),
        min_age=reader.optional_int(body, "min_age", "cohort"),
        max_age=reader.optional_int(body, "max_age", "cohort"),
        sex=tuple(sexes),
        prior_observation_days=reader.optional_int(body, "prior_observation_days", "cohort"),
    )
    if rule.min_age is not None and rule.max_age is not None and rule.min_age > rule.max_age:
        raise SpecError(f"{reader.source}: cohort.min_age is above cohort.max_age")
    if rule.prior_observation_days is not None and rule.prior_observation_days < 0:
        raise SpecError(f"{reader.source}: cohort.prior_observation_days must be >= 0")
    return rule


def _outcome(reader: SpecReader, body: dict[str, Any]) -> Outcome:
    reader.keys(body, "outcome", {"name", "concept_set", "time_at_risk"})
    return Outcome(
        name=reader.name(body, "name", "outcome"),
        concept_set=reader.name(body, "concept_set", "outcome"),
        time_at_risk=reader.window(body, "time_at_risk", "outcome"),
    )


def _feature(reader: SpecReader, body: Any, where: str) -> Feature:
    if not isinstance(body, dict):
        raise SpecError(f"{reader.source}: {where} must be a table")
    kind = cast(FeatureKind, reader.choice(body, "kind", where, FeatureKind, "value"))
    allowed = {"name", "kind", "missing", "fill", "indicator"}
    if kind == "value":
        allowed |= {"concept_set", "window", "aggregate", "value_map"}
    elif kind == "categorical":
        allowed |= {"window", "levels"}
    reader.keys(body, where, allowed)
    value_map = tuple(
        (reader.concept_id(key, f"{where}.value_map"), reader.number(body["value_map"], key, where))
        for key in reader.table(body, "value_map", where, required=False)
    )
    levels = tuple(
        _level(reader, level, f"{where}.levels[{i}]")
        for i, level in enumerate(reader.array(body, "levels", where, required=False))
    )
    feature = Feature(
        name=reader.name(body, "name", where),
        kind=kind,
        concept_set=reader.name(body, "concept_set", where) if kind == "value" else "",
        window=reader.window(body, "window", where) if "window" in body else (0, 0),
        aggregate=cast(Aggregate, reader.choice(body, "aggregate", where, Aggregate, "latest")),
        value_map=tuple(sorted(value_map)),
        levels=levels,
        missing=cast(Missing, reader.choice(body, "missing", where, Missing, "drop")),
        fill=reader.number(body, "fill", where) if "fill" in body else 0.0,
        indicator=reader.boolean(body, "indicator", where, False),
    )
    if kind == "categorical" and len(levels) < 2:
        raise SpecError(f"{reader.source}: {where}: a categorical feature needs two levels or more")
    if kind == "categorical" and feature.missing == "median":
        raise SpecError(f"{reader.source}: {where}: a categorical feature cannot take a median")
    if feature.value_map and feature.aggregate in ("any", "count"):
        raise SpecError(f"{reader.source}: {where}: value_map needs aggregate latest or mean")
    return feature


def _level(reader: SpecReader, body: Any, where: str) -> Level:
    if not isinstance(body, dict):
        raise SpecError(f"{reader.source}: {where} must be a table")
    reader.keys(body, where, {"label", "concept_set", "value_concepts"})
    label = body.get("label")
    if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", label):
        raise SpecError(f"{reader.source}: {where}.label must be 1-32 letters, digits, _ . -")
    return Level(
        label=label,
        concept_set=reader.name(body, "concept_set", where),
        value_concepts=reader.ids(body, "value_concepts", where)
        if "value_concepts" in body
        else (),
    )


def _split(reader: SpecReader, body: Any) -> SplitRule:
    if not isinstance(body, dict):
        raise SpecError(f"{reader.source}: split must be a table")
    reader.keys(body, "split", {"method", "train_fraction", "seed"})
    rule = SplitRule(
        method=cast(SplitMethod, reader.choice(body, "method", "split", SplitMethod, "none")),
        train_fraction=reader.number(body, "train_fraction", "split")
        if "train_fraction" in body
        else 0.66,
        seed=reader.optional_int(body, "seed", "split") or 0,
    )
    if not 0.0 < rule.train_fraction < 1.0:
        raise SpecError(f"{reader.source}: split.train_fraction must lie strictly between 0 and 1")
    return rule


def _check_references(spec: CohortSpec, source: str) -> None:
    """Every named concept set exists, and column names are unique."""
    names = {item.name for item in spec.concept_sets}
    used = [("cohort.entry", spec.cohort.entry), ("outcome.concept_set", spec.outcome.concept_set)]
    for feature in spec.features:
        if feature.kind == "value":
            used.append((f"feature {feature.name!r}", feature.concept_set))
        used += [(f"feature {feature.name!r}", level.concept_set) for level in feature.levels]
    for where, name in used:
        if name not in names:
            raise SpecError(f"{source}: {where} names concept set {name!r}, which is not defined")
    if not spec.features:
        raise SpecError(f"{source}: a spec needs at least one feature")
    columns = spec.columns
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated or spec.outcome.name in columns:
        raise SpecError(f"{source}: column names repeat: {duplicated or [spec.outcome.name]}")
