"""The node's OMOP CDM 5.4 database: embedded DuckDB by default, PostgreSQL by URL.

The 37 tables come from The Hyve's ``omop-cdm`` package (generated from OHDSI's CommonDataModel
v5.4 DDL), copied into one schema-less ``MetaData`` so the same table objects serve both
databases: PostgreSQL places them in a named schema through SQLAlchemy's ``schema_translate_map``,
DuckDB keeps them in its ``main`` schema.

Two deliberate departures from the package's DDL, both what OHDSI's own ETLs do:

- **No foreign keys.** OHDSI ships constraints as a separate, optional DDL step applied after a
  load. Public CDM extracts violate them (Eunomia's persons point at gender concepts its CONCEPT
  table lacks), and DuckDB cannot delete or update a row another table references, which an
  idempotent re-load needs. Referential gaps are reported by the data-quality report instead.
- **No server-side id sequences.** The ETL assigns every id itself (stable across re-loads), and
  DuckDB has no ``SERIAL``.

Primary keys and the package's indexes on ``person_id`` and concept ids are kept: consent filters
and feature extraction join on them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from medfed.errors import ConfigError, DatasetError

CDM_VERSION = "5.4"
EMBEDDED_FILE = "omop.duckdb"
DEFAULT_SCHEMA = "cdm"
DUCKDB_CONFIG: dict[str, Any] = {"threads": 2}
"""How every connection opens the embedded file: DuckDB shares one open database between the
connections of a process only when their config matches (the consent reader opens its own)."""
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

VOCABULARY_TABLES = (
    "concept",
    "concept_ancestor",
    "concept_class",
    "concept_relationship",
    "concept_synonym",
    "domain",
    "drug_strength",
    "relationship",
    "source_to_concept_map",
    "vocabulary",
)
"""Tables filled from the vocabulary, not from patients."""


@functools.cache
def cdm_metadata() -> sa.MetaData:
    """The CDM 5.4 tables without foreign keys or sequences, in a schema-less ``MetaData``."""
    from omop_cdm.regular.cdm54 import Base  # the table definitions; imported on first use

    metadata = sa.MetaData()
    for _, source in sorted(Base.metadata.tables.items()):
        columns = [
            sa.Column(
                column.name,
                _portable(column.type),
                primary_key=column.primary_key,
                nullable=column.nullable,
                autoincrement=False,
            )
            for column in source.columns
        ]
        table = sa.Table(source.name, metadata, *columns)
        for index in source.indexes:
            names = [column.name for column in index.columns]
            sa.Index(index.name, *(table.c[name] for name in names))
    return metadata


def _portable(kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """The CDM's unconstrained NUMERIC (``value_as_number``, ``quantity``, ...): exact on
    PostgreSQL, but DuckDB reads a bare NUMERIC as DECIMAL(18,3) and would round a lab value to
    three decimals, so there it is a DOUBLE."""
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float) and kind.precision is None:
        return kind.with_variant(sa.Double(), "duckdb")
    return kind


def person_tables() -> tuple[str, ...]:
    """Every CDM table with a ``person_id`` column: what consent must filter."""
    return tuple(
        sorted(name for name, table in cdm_metadata().tables.items() if "person_id" in table.c)
    )


@dataclass(frozen=True)
class OmopStore:
    """An open OMOP CDM database. ``engine`` already points at the CDM schema."""

    engine: sa.Engine
    schema: str | None
    """The PostgreSQL schema holding the CDM, or None for the embedded database."""

    @property
    def embedded(self) -> bool:
        return self.schema is None

    @property
    def metadata(self) -> sa.MetaData:
        return cdm_metadata()

    def table(self, name: str) -> sa.Table:
        try:
            return cdm_metadata().tables[name]
        except KeyError:
            raise ConfigError(f"{name!r} is not an OMOP CDM {CDM_VERSION} table") from None

    def create(self) -> None:
        """Create the schema and any missing CDM table (idempotent)."""
        with self.engine.begin() as conn:
            if self.schema is not None:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            cdm_metadata().create_all(conn, checkfirst=True)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn

    def row_counts(self) -> dict[str, int]:
        """Rows in every CDM table, by table name."""
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in sorted(cdm_metadata().tables.items())
            }

    def close(self) -> None:
        self.engine.dispose()


def open_store(location: str | Path, schema: str = DEFAULT_SCHEMA) -> OmopStore:
    """Open the OMOP store at a PostgreSQL URL (its ``schema``), or at a DuckDB file path.

    Nothing is created: call :meth:`OmopStore.create` (what ``medfed node omop init`` does).
    """
    text = str(location)
    if text.startswith(("postgresql:", "postgresql+", "postgres:")):
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"OMOP schema {schema!r} is not a plain lower-case SQL name (letters, digits, _)"
            )
        url = sa.make_url(re.sub(r"^postgres(ql)?:", "postgresql+psycopg:", text))
        engine = sa.create_engine(url, pool_pre_ping=True)
        return OmopStore(engine.execution_options(schema_translate_map={None: schema}), schema)
    if "://" in text:
        raise ConfigError(
            f"OMOP store {text!r}: give a PostgreSQL URL (postgresql://...) or a DuckDB file path"
        )
    path = Path(text)
    if path.is_dir():
        path = path / EMBEDDED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return OmopStore(_duckdb_engine(path), None)


def _duckdb_engine(path: Path) -> sa.Engine:
    connect_args: dict[str, Any] = {"config": DUCKDB_CONFIG}
    # One process owns the file (DuckDB locks it); a pool of one keeps a single connection.
    engine = sa.create_engine(
        f"duckdb:///{path}", connect_args=connect_args, poolclass=sa.pool.SingletonThreadPool
    )

    @sa.event.listens_for(engine, "handle_error")
    def _in_use(context: sa.engine.ExceptionContext) -> None:
        if "Could not set lock on file" in str(context.original_exception):
            raise DatasetError(
                f"the OMOP store {path} is open in another process (DuckDB lets one process "
                "use the file at a time; the node opens it while it builds a round's data): "
                "retry, or keep the store in PostgreSQL (node config omop_store) to share it"
            ) from context.original_exception

    return engine
