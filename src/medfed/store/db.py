"""The coordinator's tables (SQLAlchemy 2 ORM) and the engines that reach them.

SQLite is the default and PostgreSQL is reached by URL; the tables are the same on both. Two engine
flavours share one connection pool: *read* transactions see one consistent snapshot, *write*
transactions are serialized where the database cannot do better itself:

- SQLite: the sqlite3 driver's own transaction handling is switched off (it never BEGINs before a
  SELECT, so reads are not repeatable) and medfed emits ``BEGIN`` for reads and ``BEGIN IMMEDIATE``
  for writes, which takes SQLite's single write lock up front instead of failing with "database is
  locked" when a reader later tries to write. WAL lets readers proceed during a write;
  ``synchronous=FULL`` makes a commit durable before it returns (a committed round must survive a
  power cut).
- PostgreSQL: reads run REPEATABLE READ; writes run READ COMMITTED and rely on row locks and
  conditional UPDATEs (see ``StateStore.commit_round``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from medfed.errors import ConfigError

WRITE_OPTION = "medfed_write"
_WRITE = WRITE_OPTION
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for the write lock before failing: rounds commit in milliseconds,
so waiting this long means something is stuck."""


class Base(DeclarativeBase):
    pass


class NodeRow(Base):
    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    datasets_json: Mapped[str] = mapped_column(Text)
    first_seen_unix: Mapped[float] = mapped_column(Double)
    last_seen_unix: Mapped[float] = mapped_column(Double)


class DatasetSizeRow(Base):
    """A node's announced row counts of one dataset, one row per change (the audit of what each
    hospital claimed, and since when: a reply may claim no more examples than announced)."""

    __tablename__ = "dataset_sizes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(255), index=True)
    dataset: Mapped[str] = mapped_column(String(255))
    train_rows: Mapped[int] = mapped_column(Integer)
    test_rows: Mapped[int] = mapped_column(Integer)
    announced_unix: Mapped[float] = mapped_column(Double)


class StudyRow(Base):
    __tablename__ = "studies"
    study_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(64))
    completed_rounds: Mapped[int] = mapped_column(Integer)
    model_sha256: Mapped[str] = mapped_column(String(64))
    state_sha256: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text)
    created_unix: Mapped[float] = mapped_column(Double)
    updated_unix: Mapped[float] = mapped_column(Double)


class RoundRow(Base):
    __tablename__ = "rounds"
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.study_id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_sha256: Mapped[str] = mapped_column(String(64))
    state_sha256: Mapped[str] = mapped_column(String(64), default="")
    selected: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Double)
    committed_unix: Mapped[float] = mapped_column(Double)
    metrics_json: Mapped[str] = mapped_column(Text)


class RoundNodeMetricsRow(Base):
    """One node's train or eval result in a committed round; ``id`` keeps insertion order."""

    __tablename__ = "round_node_metrics"
    __table_args__ = (
        ForeignKeyConstraint(["study_id", "round"], ["rounds.study_id", "rounds.round"]),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(String(255), index=True)
    round: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    num_examples: Mapped[int] = mapped_column(Integer)
    metrics_json: Mapped[str] = mapped_column(Text)


class EncryptedEvalRow(Base):
    """The sum of a round's CKKS-encrypted evaluation vectors (the blob lives in the model store
    by hash); only the researcher's secret key decrypts it."""

    __tablename__ = "encrypted_evals"
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.study_id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    names_json: Mapped[str] = mapped_column(Text)
    sites: Mapped[int] = mapped_column(Integer)


class RejectionRow(Base):
    """A node's reply or task refused in a round.

    ``in_commit`` marks rejections written by the round's own commit, which belong to its
    ``RoundRecord``; the others were recorded on their own (refused tasks, failed rounds).
    """

    __tablename__ = "rejections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.study_id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    recorded_unix: Mapped[float] = mapped_column(Double)
    in_commit: Mapped[bool] = mapped_column(Boolean)


class CancellationRow(Base):
    """Who cancelled a study, when and why (the study row itself says ``cancelled``)."""

    __tablename__ = "cancellations"
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.study_id"), primary_key=True)
    cancelled_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    cancelled_unix: Mapped[float] = mapped_column(Double)


class LedgerRow(Base):
    """One ledger entry (:mod:`medfed.ledger.entry`), written in the transaction it records."""

    __tablename__ = "ledger"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    study: Mapped[str] = mapped_column(String(255), index=True)
    time_ms: Mapped[int] = mapped_column(BigInteger)
    payload_json: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerHeadRow(Base):
    """The newest entry (one row, id 1): appending locks it, so entries get heights one at a time
    on PostgreSQL too; ``signer_sha256`` is the certificate signing from there on."""

    __tablename__ = "ledger_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    signer_sha256: Mapped[str] = mapped_column(String(64))


class LedgerMemberRow(Base):
    """Certificates already recorded as ``member.joined`` (by fingerprint), so a heartbeat costs one
    indexed lookup, not a scan of the ledger."""

    __tablename__ = "ledger_members"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(BigInteger)


class ProtocolApprovalRow(Base):
    """A hospital's signed approval of a study protocol (its spec hash); the ledger holds the
    signature, this table answers "who approved" with one indexed query."""

    __tablename__ = "protocol_approvals"
    spec_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class Engines:
    """One pool, two transaction flavours; ``base`` owns the pool and is what ``dispose`` closes."""

    base: Engine
    read: Engine
    write: Engine


def make_engines(url: str | URL, schema: str | None = None) -> Engines:
    """Engines for ``url`` with the tables created if missing."""
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"state database {backend!r} is not supported: use sqlite or postgresql")
    if schema is not None and backend != "postgresql":
        raise ConfigError("a state schema can only be chosen on PostgreSQL")
    if backend == "sqlite":
        base = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        own_sqlite_transactions(base)
        read = base
    else:
        base = create_engine(url, pool_pre_ping=True)
        read = base.execution_options(isolation_level="REPEATABLE READ")
    options: dict[str, Any] = {}
    if schema is not None:
        _create_schema(base, schema)
        options["schema_translate_map"] = {None: schema}
    read = read.execution_options(**options)
    write = base.execution_options(**options, **{_WRITE: True})
    with write.begin() as conn:
        Base.metadata.create_all(conn)
    return Engines(base, read, write)


def own_sqlite_transactions(engine: Engine) -> None:
    """medfed emits ``BEGIN`` for reads and ``BEGIN IMMEDIATE`` for writes (connections opened
    with ``execution_options(**{WRITE_OPTION: True})``), in WAL mode with durable commits."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # medfed emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = bool(conn.get_execution_options().get(_WRITE, False))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _create_schema(engine: Engine, schema: str) -> None:
    if _SCHEMA_NAME.fullmatch(schema) is None:
        raise ConfigError(f"schema name {schema!r} must be lowercase letters, digits and _")
    with engine.begin() as conn:
        # The name is checked against _SCHEMA_NAME above, so it cannot break out of the quotes.
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
