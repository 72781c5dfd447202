"""The node's read side: every round reads the CDM through a :class:`ConsentedReader`.

The reader shows the CDM tables under their own names (``store.table("person")`` and so on, through
``schema_translate_map``) holding only the study's consented persons, and records the consented N
and the consent-log watermark it read at. A revocation therefore takes effect from the next reader
(the next round), never in the middle of one.

On PostgreSQL it connects as the study's own role (the steward's URL with the user replaced) and
refuses to run if that session could bypass row-level security or if RLS is off on a person table.
On DuckDB it reads through the study's views (see :mod:`medfed.data.consent.embedded` for why that
is weaker).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from medfed.data.consent import embedded, postgres
from medfed.data.consent.model import (
    EMBEDDED_CONSENT_SCHEMA,
    check_study,
    consent_schema,
    consent_tables,
)
from medfed.data.omop.store import DUCKDB_CONFIG, OmopStore
from medfed.errors import ConsentError


@dataclass
class ConsentedReader:
    """One round's view of the CDM: consented persons only, at a fixed consent state.

    Run the round's queries on :attr:`connection`: it holds one snapshot (PostgreSQL REPEATABLE
    READ, read only), the one ``consented_n`` and ``watermark`` were read in. :attr:`engine`
    opens fresh connections that see later consent changes.
    """

    study_id: str
    engine: sa.Engine
    connection: sa.Connection
    consented_n: int
    watermark: int

    def close(self) -> None:
        self.connection.close()
        self.engine.dispose()

    def __enter__(self) -> ConsentedReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def consented_reader(
    store: OmopStore,
    study_id: str,
    *,
    role: str | None = None,
    password_file: Path | None = None,
) -> ConsentedReader:
    """Open the study's consented view of ``store`` (the steward's store, from the node config).

    ``role`` overrides the role recorded by ``medfed node consent enable`` (PostgreSQL only);
    ``password_file`` holds that role's password where the server asks for one.
    """
    check_study(study_id)
    if store.embedded:
        return _embedded_reader(store, study_id)
    return _postgres_reader(store, study_id, role or _recorded_role(store, study_id), password_file)


def _recorded_role(store: OmopStore, study_id: str) -> str:
    study_role = consent_tables(consent_schema(store))[2]
    try:
        with store.engine.connect() as conn:
            roles = (
                conn.execute(
                    sa.select(study_role.c.role_name).where(study_role.c.study_id == study_id)
                )
                .scalars()
                .all()
            )
    except sa.exc.ProgrammingError:
        roles = []
    if len(roles) != 1:
        raise ConsentError(
            f"study {study_id!r} has {len(roles)} read roles in this store (need exactly one):"
            f" run medfed node consent enable {study_id}"
        )
    return str(roles[0])


def _postgres_reader(
    store: OmopStore, study_id: str, role: str, password_file: Path | None
) -> ConsentedReader:
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConsentError(f"cannot read the password file {password_file}: {exc}") from exc
    url = store.engine.url.set(username=role, password=password)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool).execution_options(
        schema_translate_map={None: store.schema}
    )
    conn = engine.connect()
    try:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.begin()
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))
        postgres.check_session(conn, store)
        watermark = postgres.read_scope(conn, store, study_id)
        return ConsentedReader(study_id, engine, conn, _count_persons(conn, store), watermark)
    except BaseException:
        conn.close()
        engine.dispose()
        raise


def _embedded_reader(store: OmopStore, study_id: str) -> ConsentedReader:
    with store.begin() as conn:
        schema = embedded.ensure_views(conn, study_id)
    # Its own connection to the same in-process database (shared because the config is the
    # store's): the reader gets a snapshot of its own, and the steward's engine stays usable.
    engine = sa.create_engine(
        store.engine.url, connect_args={"config": DUCKDB_CONFIG}, poolclass=sa.pool.NullPool
    ).execution_options(schema_translate_map={None: schema})
    conn = engine.connect()
    try:
        conn.begin()
        log = consent_tables(EMBEDDED_CONSENT_SCHEMA)[1]
        watermark = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(log.c.seq), 0)).where(log.c.study_id == study_id)
        ).scalar_one()
        n = _count_persons(conn, store)
        return ConsentedReader(study_id, engine, conn, n, int(watermark))
    except BaseException:
        conn.close()
        engine.dispose()
        raise


def _count_persons(conn: sa.Connection, store: OmopStore) -> int:
    person = store.table("person")
    return int(conn.execute(sa.select(sa.func.count()).select_from(person)).scalar_one())
