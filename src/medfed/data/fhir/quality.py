"""The data-quality report of an OMOP store: what a data steward checks after each load.

- rows per CDM table;
- mapping rate per domain: the share of rows whose concept is a standard concept (a concept 0
  or a non-standard concept is what cohorts and features cannot see);
- unmapped source codes by frequency, with their vocabulary, so the steward knows which local
  codes a SOURCE_TO_CONCEPT_MAP row (or a fuller Athena download) would recover;
- persons without an observation period, whom OHDSI tools treat as never observed.

It reads any OMOP store, FHIR-loaded or CSV-imported; for FHIR-loaded rows the vocabulary of an
unmapped code comes from the ETL's key table, for others from the source concept, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from medfed.data.fhir.keys import KEY_TABLE, key_table
from medfed.data.omop.store import OmopStore


@dataclass(frozen=True)
class Domain:
    name: str
    table: str
    concept: str
    source_value: str
    source_concept: str
    id_column: str


DOMAINS = tuple(
    Domain(name, table, f"{prefix}_concept_id", f"{prefix}_source_value",
           f"{prefix}_source_concept_id", id_column)
    for name, table, prefix, id_column in (
        ("Condition", "condition_occurrence", "condition", "condition_occurrence_id"),
        ("Drug", "drug_exposure", "drug", "drug_exposure_id"),
        ("Measurement", "measurement", "measurement", "measurement_id"),
        ("Observation", "observation", "observation", "observation_id"),
        ("Procedure", "procedure_occurrence", "procedure", "procedure_occurrence_id"),
        ("Visit", "visit_occurrence", "visit", "visit_occurrence_id"),
    )
)  # fmt: skip


@dataclass(frozen=True)
class DomainMapping:
    domain: str
    table: str
    rows: int
    mapped: int
    """Rows whose concept is a standard concept."""

    @property
    def rate(self) -> float | None:
        return self.mapped / self.rows if self.rows else None


@dataclass(frozen=True)
class UnmappedCode:
    domain: str
    vocabulary: str
    """The OMOP vocabulary id, the FHIR system URI when no vocabulary matches, or ""."""
    code: str
    count: int


@dataclass(frozen=True)
class QualityReport:
    rows: dict[str, int]
    mapping: tuple[DomainMapping, ...]
    unmapped: tuple[UnmappedCode, ...]
    """Most frequent first."""
    persons: int
    persons_without_observation_period: int

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "mapping": [
                {"domain": m.domain, "table": m.table, "rows": m.rows, "mapped": m.mapped,
                 "rate": m.rate}
                for m in self.mapping
            ],
            "unmapped": [
                {"domain": u.domain, "vocabulary": u.vocabulary, "code": u.code, "count": u.count}
                for u in self.unmapped
            ],
            "persons": self.persons,
            "persons_without_observation_period": self.persons_without_observation_period,
        }  # fmt: skip


def quality_report(store: OmopStore) -> QualityReport:
    """Measure ``store`` as it is now (read-only)."""
    rows = store.row_counts()
    with store.engine.connect() as conn:
        has_keys = sa.inspect(conn).has_table(KEY_TABLE, schema=store.schema)
        mapping = tuple(_mapping(conn, store, domain) for domain in DOMAINS)
        unmapped = [u for domain in DOMAINS for u in _unmapped(conn, store, domain, has_keys)]
        person = store.table("person")
        period = store.table("observation_period")
        unobserved = conn.execute(
            sa.select(sa.func.count())
            .select_from(person)
            .where(~sa.exists().where(period.c.person_id == person.c.person_id))
        ).scalar_one()
    unmapped.sort(key=lambda u: (-u.count, u.domain, u.vocabulary, u.code))
    return QualityReport(
        rows=rows,
        mapping=mapping,
        unmapped=tuple(unmapped),
        persons=rows["person"],
        persons_without_observation_period=int(unobserved),
    )


def _mapping(conn: sa.Connection, store: OmopStore, domain: Domain) -> DomainMapping:
    table = store.table(domain.table)
    concept = store.table("concept")
    concept_id = table.c[domain.concept]
    total, mapped = conn.execute(
        sa.select(sa.func.count(), sa.func.count(concept.c.concept_id)).select_from(
            table.outerjoin(
                concept,
                sa.and_(
                    concept.c.concept_id == concept_id,
                    concept_id != 0,
                    concept.c.standard_concept == "S",
                ),
            )
        )
    ).one()
    return DomainMapping(domain.name, domain.table, int(total), int(mapped))


def _unmapped(
    conn: sa.Connection, store: OmopStore, domain: Domain, has_keys: bool
) -> list[UnmappedCode]:
    table = store.table(domain.table)
    source_concept = store.table("concept").alias("source_concept")
    joined = table.outerjoin(
        source_concept,
        sa.and_(
            source_concept.c.concept_id == table.c[domain.source_concept],
            table.c[domain.source_concept] != 0,
        ),
    )
    vocabulary: Any = source_concept.c.vocabulary_id
    if has_keys:
        joined = joined.outerjoin(
            key_table,
            sa.and_(
                key_table.c.cdm_table == domain.table,
                key_table.c.row_id == table.c[domain.id_column],
            ),
        )
        vocabulary = sa.func.coalesce(key_table.c.source_vocabulary, vocabulary)
    vocabulary = sa.func.coalesce(vocabulary, "").label("vocabulary")
    code = sa.func.coalesce(table.c[domain.source_value], "").label("code")
    rows = conn.execute(
        sa.select(vocabulary, code, sa.func.count())
        .select_from(joined)
        .where(table.c[domain.concept] == 0)
        .group_by(vocabulary, code)
    ).all()
    return [UnmappedCode(domain.name, str(v), str(c), int(n)) for v, c, n in rows]
