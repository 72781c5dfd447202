"""Consent on the embedded DuckDB store: the same filter, through views. Weaker, and why.

Each study gets a schema ``consented_<study>`` with one view per readable CDM table, under the
table's own name; the views of tables with a ``person_id`` keep only persons whose consent to the
study is granted. The node reads through these views with ``schema_translate_map``, so its queries
name ``store.table("person")`` exactly as they would on PostgreSQL.

This is a filter, not a boundary. DuckDB has no roles, no row-level security and no triggers: the
node process owns the database file and could read the base tables or rewrite the consent log if
its code chose to. It protects against mistakes in the node's own queries, not against the node. A
hospital that needs the database to hold the line runs its OMOP store on PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

from medfed.data.consent.model import (
    EMBEDDED_CONSENT_SCHEMA,
    WITHHELD_TABLES,
    check_study,
    consent_tables,
    filtered_tables,
    readable_tables,
    sql_name,
)


def view_schema(study_id: str) -> str:
    return sql_name("consented", check_study(study_id))


def create_consent_objects(conn: sa.Connection) -> None:
    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{EMBEDDED_CONSENT_SCHEMA}"'))
    consent_tables(EMBEDDED_CONSENT_SCHEMA)[0].metadata.create_all(conn, checkfirst=True)


def ensure_views(conn: sa.Connection, study_id: str) -> str:
    """(Re)create the study's consented views; returns their schema. Idempotent and cheap."""
    schema = view_schema(study_id)
    create_consent_objects(conn)
    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    # Names are checked identifiers and the study pattern admits no quote: safe as literals.
    study = check_study(study_id)
    consented = f'SELECT person_id FROM "{EMBEDDED_CONSENT_SCHEMA}".consent'  # noqa: S608
    consented += f" WHERE study_id = '{study}' AND decision = 'granted'"
    filtered = set(filtered_tables())
    for table in readable_tables():
        where = f" WHERE person_id IN ({consented})" if table in filtered else ""
        view = f'CREATE OR REPLACE VIEW "{schema}"."{table}" AS SELECT * FROM main."{table}"'  # noqa: S608
        conn.execute(sa.text(view + where))
    for table in WITHHELD_TABLES:
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{schema}"."{table}"'))
    return schema
