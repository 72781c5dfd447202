"""Stable row ids for FHIR resources: the source-key table ``medfed_fhir_key``.

The CDM wants integer ids; FHIR has UUIDs. Each CDM row the ETL writes gets one key row,
``(cdm_table, source_key) -> row_id``, with the Patient it belongs to and the vocabulary of its
source code. Re-loading a bundle finds the same ids again (so a reload changes nothing, and a
changed bundle keeps the ids of what did not change); new resources get ids above everything in
the table, CSV imports included. The vocabulary column lets the quality report name the code
system of an unmapped code, which ``*_source_value`` alone cannot.

The table lives in the CDM schema beside the CDM tables. It names patients (their FHIR ids, as
``person_source_value`` does), so a read-only node role needs no access to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from medfed.data.omop.bulk import insert_rows
from medfed.data.omop.store import OmopStore

KEY_TABLE = "medfed_fhir_key"

_metadata = sa.MetaData()
key_table = sa.Table(
    KEY_TABLE,
    _metadata,
    sa.Column("cdm_table", sa.String(40), primary_key=True),
    sa.Column("source_key", sa.String(255), primary_key=True),
    sa.Column("row_id", sa.BigInteger, nullable=False),
    sa.Column("person_key", sa.String(255)),
    sa.Column("source_vocabulary", sa.String(255)),
    sa.Index("ix_medfed_fhir_key_person", "person_key"),
    sa.Index("ix_medfed_fhir_key_row", "cdm_table", "row_id"),
)

ID_COLUMNS = {
    "person": "person_id",
    "observation_period": "observation_period_id",
    "visit_occurrence": "visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id",
    "measurement": "measurement_id",
    "observation": "observation_id",
    "drug_exposure": "drug_exposure_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "care_site": "care_site_id",
    "provider": "provider_id",
}
"""The tables the ETL writes that carry their own id, and that id's column."""

SHARED_TABLES = ("care_site", "provider")
"""Rows shared by every patient of a site: replaced by key, never deleted with a patient."""


def create_key_table(store: OmopStore) -> None:
    with store.begin() as conn:
        _metadata.create_all(conn, checkfirst=True)


@dataclass
class KeyRow:
    cdm_table: str
    source_key: str
    row_id: int
    person_key: str | None
    source_vocabulary: str | None


@dataclass
class RowIds:
    """Ids for one bundle's rows, inside its transaction: known keys first, then fresh ids."""

    conn: sa.Connection
    store: OmopStore
    known: dict[tuple[str, str], int]
    _next: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        conn: sa.Connection,
        store: OmopStore,
        patients: Iterable[str],
        shared: Iterable[tuple[str, str]],
        highest: dict[str, int] | None = None,
    ) -> RowIds:
        """Read the keys of these patients' rows and of the shared rows this bundle names.

        ``highest``: the last id given in each table, carried from bundle to bundle of one load
        on the embedded store (one process owns its file, so no other writer can take ids in
        between, and a rolled-back bundle only leaves a gap); None: read from the tables."""
        if store.schema is not None:  # one ETL transaction at a time allocates ids
            conn.execute(sa.text(f'LOCK TABLE "{store.schema}".{KEY_TABLE} IN EXCLUSIVE MODE'))
        known: dict[tuple[str, str], int] = {}
        patients = sorted(set(patients))
        if patients:
            found = conn.execute(
                sa.select(key_table.c.cdm_table, key_table.c.source_key, key_table.c.row_id).where(
                    key_table.c.person_key.in_(patients)
                )
            )
            known.update({(table, key): int(row_id) for table, key, row_id in found})
        for table in SHARED_TABLES:
            keys = sorted({key for kind, key in shared if kind == table})
            if keys:
                rows = conn.execute(
                    sa.select(key_table.c.source_key, key_table.c.row_id)
                    .where(key_table.c.cdm_table == table)
                    .where(key_table.c.source_key.in_(keys))
                )
                known.update({(table, key): int(row_id) for key, row_id in rows})
        return cls(conn, store, known, highest if highest is not None else {})

    def lookup(self, table: str, source_key: str) -> int | None:
        return self.known.get((table, source_key))

    def assign(self, table: str, source_key: str) -> int:
        """The id of ``source_key``'s row in ``table``: the one it had, or a fresh one."""
        existing = self.known.get((table, source_key))
        if existing is not None:
            return existing
        if not self._next:
            self._next.update(self._highest())
        row_id = self._next[table] + 1
        self._next[table] = row_id
        self.known[(table, source_key)] = row_id
        return row_id

    def _highest(self) -> dict[str, int]:
        """The highest id in each table, in one query. Every key names a row that exists
        (keys are rewritten with their rows), so the tables alone bound the ids in use."""
        columns = [
            sa.select(sa.func.max(self.store.table(table).c[column])).scalar_subquery()
            for table, column in ID_COLUMNS.items()
        ]
        highest = self.conn.execute(sa.select(*columns)).one()
        return {table: int(value or 0) for table, value in zip(ID_COLUMNS, highest, strict=True)}


def replace_keys(conn: sa.Connection, patients: Iterable[str], rows: list[KeyRow]) -> None:
    """Drop the patients' old keys and the shared keys being rewritten, then write ``rows``."""
    patients = sorted(set(patients))
    if patients:
        conn.execute(sa.delete(key_table).where(key_table.c.person_key.in_(patients)))
    for table in SHARED_TABLES:
        keys = sorted({row.source_key for row in rows if row.cdm_table == table})
        if keys:
            conn.execute(
                sa.delete(key_table)
                .where(key_table.c.cdm_table == table)
                .where(key_table.c.source_key.in_(keys))
            )
    insert_rows(conn, key_table, [vars(row) for row in rows])
