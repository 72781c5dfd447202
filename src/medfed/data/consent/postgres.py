"""PostgreSQL row-level security for consent: the database, not the node, decides who is read.

The boundary, and why each piece is there:

- **One LOGIN role per (site, study)**, ``NOSUPERUSER NOBYPASSRLS NOINHERIT``, SELECT-only on the
  CDM. The study is derived from ``session_user`` through ``study_role``, a table the role cannot
  read or write. ``session_user`` cannot be changed by a non-superuser session (``SET SESSION
  AUTHORIZATION`` needs a superuser; ``SET ROLE``/``RESET ROLE`` change ``current_user`` only, and
  the role is a member of nothing). A GUC such as ``medfed.study`` would not do: any client can
  ``SET`` it.
- **Policies** ``USING (person_id IN (SELECT <consent>.consented_person_ids()))`` on every CDM
  table with a ``person_id``, RLS enabled *and forced* (so even an owner without a policy reads
  nothing). The function is ``SECURITY DEFINER`` and *set-returning*: PostgreSQL evaluates it once
  per query into a hash (0.4-0.5 s per 1M rows measured here) where a per-row
  ``is_consented(person_id)`` costs 10-16 s. It takes no argument, so there is nothing to call it
  with, and the read role has no USAGE on its schema anyway.
- **The consent log is append-only in the database**: UPDATE/DELETE/TRUNCATE are revoked and a
  trigger raises, which also stops a superuser who forgot (triggers run for superusers too).

Superusers and ``BYPASSRLS`` roles ignore every policy: :mod:`medfed.data.consent.reader` checks
the session before any data query and refuses.
"""

from __future__ import annotations

import sqlalchemy as sa

from medfed.data.consent.model import (
    api_schema,
    check_study,
    consent_schema,
    consent_tables,
    default_read_role,
    filtered_tables,
    readable_tables,
)
from medfed.data.omop.store import OmopStore
from medfed.errors import ConsentError

CONSENT_POLICY = "medfed_consent"
STEWARD_POLICY = "medfed_steward"


def create_consent_objects(conn: sa.Connection, store: OmopStore) -> None:
    """Consent schema, tables, append-only log and the two definer functions (idempotent)."""
    cs, api = consent_schema(store), api_schema(store)
    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{cs}"'))
    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{api}"'))
    consent_tables(cs)[0].metadata.create_all(conn, checkfirst=True)
    for statement in _consent_ddl(cs, api):
        conn.execute(sa.text(statement))


def _consent_ddl(cs: str, api: str) -> list[str]:
    definer = "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    return [
        f'REVOKE ALL ON SCHEMA "{cs}" FROM PUBLIC',
        f'REVOKE UPDATE, DELETE, TRUNCATE ON "{cs}".consent_log FROM PUBLIC, CURRENT_USER',
        f"""CREATE OR REPLACE FUNCTION "{cs}".refuse_log_change() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN
              RAISE EXCEPTION 'the consent log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
            END $$""",
        f"""CREATE OR REPLACE TRIGGER consent_log_append_only
            BEFORE UPDATE OR DELETE ON "{cs}".consent_log
            FOR EACH ROW EXECUTE FUNCTION "{cs}".refuse_log_change()""",
        f"""CREATE OR REPLACE TRIGGER consent_log_no_truncate
            BEFORE TRUNCATE ON "{cs}".consent_log
            FOR EACH STATEMENT EXECUTE FUNCTION "{cs}".refuse_log_change()""",
        f"""CREATE OR REPLACE FUNCTION "{cs}".consented_person_ids() RETURNS SETOF bigint
            {definer} AS $$
              SELECT c.person_id FROM "{cs}".consent c
              JOIN "{cs}".study_role r ON r.study_id = c.study_id
              WHERE r.role_name = session_user AND c.decision = 'granted'
            $$""",  # noqa: S608 (schema names are checked identifiers)
        f'REVOKE ALL ON FUNCTION "{cs}".consented_person_ids() FROM PUBLIC',
        f"""CREATE OR REPLACE FUNCTION "{api}".consent_scope()
            RETURNS TABLE (study_id text, watermark bigint) {definer} AS $$
              SELECT r.study_id::text,
                     (SELECT coalesce(max(l.seq), 0) FROM "{cs}".consent_log l
                      WHERE l.study_id = r.study_id)
              FROM "{cs}".study_role r WHERE r.role_name = session_user
            $$""",  # noqa: S608 (schema names are checked identifiers)
        f'REVOKE ALL ON FUNCTION "{api}".consent_scope() FROM PUBLIC',
    ]


def enable_study(
    conn: sa.Connection, store: OmopStore, study_id: str, role: str | None, password: str | None
) -> str:
    """Create (or tighten) the study's read role, map it to the study, and switch RLS on."""
    if store.schema is None:
        raise ConsentError("row-level security needs the PostgreSQL store")
    role = role or default_read_role(store, check_study(study_id))
    cs, api, cdm = consent_schema(store), api_schema(store), store.schema
    create_consent_objects(conn, store)
    _map_role(conn, cs, role, study_id)
    options = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION"
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    verb = "ALTER" if exists.first() else "CREATE"
    secret = "" if password is None else " PASSWORD " + _literal(password)
    conn.execute(sa.text(f'{verb} ROLE "{role}" {options}{secret}'))
    grants = [
        f'GRANT USAGE ON SCHEMA "{cdm}" TO "{role}"',
        f'GRANT USAGE ON SCHEMA "{api}" TO "{role}"',
        f'GRANT EXECUTE ON FUNCTION "{api}".consent_scope() TO "{role}"',
        # Policies run with the reader's privileges: it must be able to execute the filter.
        f'GRANT EXECUTE ON FUNCTION "{cs}".consented_person_ids() TO "{role}"',
        *(f'GRANT SELECT ON "{cdm}"."{t}" TO "{role}"' for t in readable_tables()),
    ]
    for statement in grants + _policy_ddl(cs, cdm):
        conn.execute(sa.text(statement))
    return role


def _map_role(conn: sa.Connection, cs: str, role: str, study_id: str) -> None:
    study_role = consent_tables(cs)[2]
    current = conn.execute(
        sa.select(study_role.c.study_id).where(study_role.c.role_name == role)
    ).scalar_one_or_none()
    if current is None:
        conn.execute(study_role.insert().values(role_name=role, study_id=study_id))
    elif current != study_id:
        raise ConsentError(f"role {role!r} already reads for study {current!r}: one role per study")


def _policy_ddl(cs: str, cdm: str) -> list[str]:
    statements: list[str] = []
    for table in filtered_tables():
        qualified = f'"{cdm}"."{table}"'
        statements += [
            f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS {CONSENT_POLICY} ON {qualified}",
            f"CREATE POLICY {CONSENT_POLICY} ON {qualified} FOR SELECT TO PUBLIC"
            f' USING (person_id IN (SELECT "{cs}".consented_person_ids()))',
            f"DROP POLICY IF EXISTS {STEWARD_POLICY} ON {qualified}",
            # FORCE applies policies to the owner too: the steward (who loads data) keeps all rows.
            f"CREATE POLICY {STEWARD_POLICY} ON {qualified} FOR ALL TO CURRENT_USER"
            " USING (true) WITH CHECK (true)",
        ]
    return statements


def check_session(conn: sa.Connection, store: OmopStore) -> None:
    """Refuse a session that would bypass the policies, or tables that have none switched on."""
    rows = conn.execute(
        sa.text(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles"
            " WHERE rolname IN (current_user, session_user)"
        )
    ).all()
    bypassing = sorted(str(name) for name, is_super, bypass in rows if is_super or bypass)
    if bypassing:
        raise ConsentError(
            f"refusing to read patient data as {', '.join(bypassing)}: a superuser or BYPASSRLS"
            " role ignores consent; read as the study's role (medfed node consent enable)"
        )
    security: dict[str, bool] = dict(
        conn.execute(
            sa.text(
                "SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :schema AND c.relkind = 'r'"
            ),
            {"schema": store.schema},
        ).all()
    )
    unprotected = [t for t in filtered_tables() if not security.get(t, False)]
    if unprotected:
        raise ConsentError(
            f"row-level security is off on {', '.join(unprotected)} in schema {store.schema!r}:"
            " run medfed node consent enable"
        )


def read_scope(conn: sa.Connection, store: OmopStore, study_id: str) -> int:
    """The watermark of the study this session's role reads for; refuse any other study."""
    scope = f'SELECT * FROM "{api_schema(store)}".consent_scope()'  # noqa: S608 (a checked name)
    row = conn.execute(sa.text(scope)).first()
    if row is None:
        raise ConsentError("this database role reads for no study: run medfed node consent enable")
    if row[0] != study_id:
        raise ConsentError(f"this database role reads for study {row[0]!r}, not {study_id!r}")
    return int(row[1])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
