"""Consent records, the consent log, and the SQL names both databases use.

Three tables live in a consent schema next to the CDM (``<cdm>_consent`` on PostgreSQL,
``medfed_consent`` in the embedded DuckDB file):

- ``consent``: one row per (study, person) with the current decision and when it was made;
- ``consent_log``: every decision ever recorded, append-only, numbered by ``seq``. The highest
  ``seq`` of a study is its *watermark*: a round that records (consented N, watermark) names
  exactly which consent state it trained on, without naming anyone;
- ``study_role`` (used on PostgreSQL): which database role reads for which study. Row-level
  security derives the study from ``session_user`` through it, so the node cannot pick another.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from medfed.data.omop.store import OmopStore, cdm_metadata, person_tables
from medfed.errors import ConfigError

STUDY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
"""Study ids as the coordinator's study spec allows them."""

EMBEDDED_CONSENT_SCHEMA = "medfed_consent"

WITHHELD_TABLES = ("cost", "episode_event", "fact_relationship", "note_nlp")
"""CDM tables holding a person's data without a ``person_id`` column (they point at a
visit, a note or an episode): a study reader gets no access to them, not an unfiltered one."""


class Decision(enum.Enum):
    GRANTED = "granted"
    REVOKED = "revoked"


PersonRef = int | str
"""A patient: an ``int`` is a CDM ``person_id``; a ``str`` is ``person.person_source_value``
(the FHIR Patient id the ETL keeps)."""


@dataclass(frozen=True)
class ConsentState:
    """What a researcher may see about a site's consent for a study: a count and a log position."""

    consented_n: int
    watermark: int


@dataclass(frozen=True)
class LogEntry:
    seq: int
    study_id: str
    person_id: int
    person_source_value: str | None
    decision: Decision
    at: datetime
    recorded_by: str
    source: str


@dataclass(frozen=True)
class ConsentSummary:
    """The steward's view of one study: counts, watermark and the latest log entries."""

    study_id: str
    granted: int
    revoked: int
    watermark: int
    tail: tuple[LogEntry, ...]


def check_study(study_id: str) -> str:
    if not STUDY_PATTERN.match(study_id):
        raise ConfigError(
            f"study id {study_id!r}: use lower-case letters, digits, '_', '.', '-' (max 63)"
        )
    return study_id


def sql_name(*parts: str) -> str:
    """A plain lower-case SQL identifier from ``parts``; a hash keeps distinct inputs distinct.

    Study ids may hold '.' and '-', which identifiers cannot without quoting; any rewrite or
    truncation appends 8 hex digits of the original so that ``a.b`` and ``a_b`` never collide.
    """
    raw = "_".join(parts)
    name = re.sub(r"[^a-z0-9_]", "_", raw.lower())
    if name != raw or len(name) > 63:
        name = f"{name[:54]}_{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return name


def consent_schema(store: OmopStore) -> str:
    return EMBEDDED_CONSENT_SCHEMA if store.schema is None else sql_name(store.schema, "consent")


def api_schema(store: OmopStore) -> str:
    """PostgreSQL schema with the one function a study reader may call (its watermark)."""
    return sql_name(consent_schema(store), "api")


def default_read_role(store: OmopStore, study_id: str) -> str:
    """One login role per (site, study): the CDM schema names the site inside the cluster."""
    return sql_name(store.schema or "cdm", "read", check_study(study_id))


def readable_tables() -> tuple[str, ...]:
    """The CDM tables a study reader sees: every table except the withheld ones."""
    return tuple(sorted(name for name in cdm_metadata().tables if name not in WITHHELD_TABLES))


def filtered_tables() -> tuple[str, ...]:
    return person_tables()


@functools.cache
def consent_tables(schema: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    """``(consent, consent_log, study_role)`` in ``schema``."""
    metadata = sa.MetaData(schema=schema)
    consent = sa.Table(
        "consent",
        metadata,
        sa.Column("study_id", sa.String(63), primary_key=True),
        sa.Column("person_id", sa.BigInteger, primary_key=True),
        sa.Column("person_source_value", sa.String(255)),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("recorded_by", sa.String(255), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("log_seq", sa.BigInteger, nullable=False),
    )
    log = sa.Table(
        "consent_log",
        metadata,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("study_id", sa.String(63), nullable=False, index=True),
        sa.Column("person_id", sa.BigInteger, nullable=False),
        sa.Column("person_source_value", sa.String(255)),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(255), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
    )
    role = sa.Table(
        "study_role",
        metadata,
        sa.Column("role_name", sa.String(63), primary_key=True),
        sa.Column("study_id", sa.String(63), nullable=False),
    )
    return consent, log, role
