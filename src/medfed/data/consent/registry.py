"""The data steward's side of consent: record decisions, import FHIR Consent, show, enable.

Every decision is one row appended to the consent log (its ``seq`` is the new watermark) and an
upsert of the person's current consent, in one transaction. Decisions name patients by
``person_source_value`` (the FHIR Patient id) or ``person_id``; a patient the CDM does not hold is
refused by name, and nothing in that call is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from medfed.data.consent import embedded, postgres
from medfed.data.consent.fhir import Refusal, read_consents
from medfed.data.consent.model import (
    ConsentState,
    ConsentSummary,
    Decision,
    LogEntry,
    PersonRef,
    check_study,
    consent_schema,
    consent_tables,
)
from medfed.data.omop.store import OmopStore
from medfed.errors import ConsentError


@dataclass(frozen=True)
class _Change:
    person_id: int
    source_value: str | None
    decision: Decision
    at: datetime
    source: str


@dataclass(frozen=True)
class ImportReport:
    recorded: int
    refused: tuple[Refusal, ...]
    state: ConsentState


class Consents:
    """Consent of the patients in one OMOP store, per study (the steward's connection)."""

    def __init__(self, store: OmopStore) -> None:
        self.store = store
        self._consent, self._log, _ = consent_tables(consent_schema(store))
        self._created = False

    def create(self) -> None:
        """Consent schema and tables, the append-only log (idempotent; once per instance)."""
        if self._created:
            return
        with self.store.begin() as conn:
            if self.store.embedded:
                embedded.create_consent_objects(conn)
            else:
                postgres.create_consent_objects(conn, self.store)
        self._created = True

    def enable(self, study_id: str, role: str | None = None, password: str | None = None) -> str:
        """Make the study readable under consent: PostgreSQL read role + RLS, or DuckDB views.

        Returns the role name (PostgreSQL) or the view schema (DuckDB).
        """
        check_study(study_id)
        with self.store.begin() as conn:
            if self.store.embedded:
                return embedded.ensure_views(conn, study_id)
            return postgres.enable_study(conn, self.store, study_id, role, password)

    def grant(
        self,
        study_id: str,
        persons: Iterable[PersonRef],
        by: str,
        at: datetime,
        source: str = "cli",
    ) -> ConsentState:
        return self._record_refs(study_id, persons, Decision.GRANTED, by, at, source)

    def revoke(
        self,
        study_id: str,
        persons: Iterable[PersonRef],
        by: str,
        at: datetime,
        source: str = "cli",
    ) -> ConsentState:
        return self._record_refs(study_id, persons, Decision.REVOKED, by, at, source)

    def import_fhir(
        self, study_id: str, paths: Sequence[Path], by: str, at: datetime
    ) -> ImportReport:
        """Record each valid Consent in ``paths``; refuse the others (and unknown patients) by name.

        ``at`` stands in for a Consent without ``dateTime``.
        """
        if at.tzinfo is None:
            raise ConsentError("a consent time needs a time zone (use UTC)")
        decisions, refused = read_consents(list(paths))
        self.create()
        with self.store.begin() as conn:
            known = self._resolve(conn, [d.patient for d in decisions])
            changes: list[_Change] = []
            for item in decisions:
                if item.patient not in known:
                    refused.append(
                        Refusal(item.name, f"patient {item.patient!r} is not in the CDM")
                    )
                    continue
                pid = known[item.patient]
                changes.append(
                    _Change(pid, item.patient, item.decision, item.at or at, f"fhir:{item.name}")
                )
            self._append(conn, check_study(study_id), changes, by)
        return ImportReport(len(changes), tuple(refused), self.state(study_id))

    def state(self, study_id: str) -> ConsentState:
        """Consented persons present in the CDM, and the study's watermark."""
        with self.store.engine.connect() as conn:
            return _state(conn, self.store, self._consent, self._log, check_study(study_id))

    def show(self, study_id: str, tail: int = 10) -> ConsentSummary:
        check_study(study_id)
        consent, log = self._consent, self._log
        with self.store.engine.connect() as conn:
            counts: dict[str, int] = dict(  # rows, not the Result: it has keys()
                conn.execute(
                    sa.select(consent.c.decision, sa.func.count())
                    .where(consent.c.study_id == study_id)
                    .group_by(consent.c.decision)
                ).all()
            )
            rows = conn.execute(
                sa.select(log)
                .where(log.c.study_id == study_id)
                .order_by(log.c.seq.desc())
                .limit(tail)
            ).all()
        entries = tuple(
            LogEntry(r.seq, r.study_id, r.person_id, r.person_source_value, Decision(r.decision),
                     r.decided_at, r.recorded_by, r.source)
            for r in reversed(rows)
        )  # fmt: skip
        return ConsentSummary(
            study_id,
            int(counts.get(Decision.GRANTED.value, 0)),
            int(counts.get(Decision.REVOKED.value, 0)),
            entries[-1].seq if entries else 0,
            entries,
        )

    def _record_refs(
        self,
        study_id: str,
        persons: Iterable[PersonRef],
        decision: Decision,
        by: str,
        at: datetime,
        source: str,
    ) -> ConsentState:
        check_study(study_id)
        if at.tzinfo is None:
            raise ConsentError("a consent time needs a time zone (use UTC)")
        refs = list(persons)
        self.create()
        with self.store.begin() as conn:
            known = self._resolve(conn, refs)
            missing = [str(ref) for ref in refs if ref not in known]
            if missing:
                shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise ConsentError(
                    f"{len(missing)} patient(s) not in the CDM, nothing recorded: {shown}"
                )
            sources = self._source_values(conn, [known[ref] for ref in refs])
            changes = [
                _Change(known[ref], sources.get(known[ref]), decision, at, source) for ref in refs
            ]
            self._append(conn, study_id, changes, by)
        return self.state(study_id)

    def _resolve(self, conn: sa.Connection, refs: Sequence[PersonRef]) -> dict[PersonRef, int]:
        """Map each reference to its person_id: ints by person_id, strings by source value."""
        person = self.store.table("person")
        ids = sorted({ref for ref in refs if isinstance(ref, int)})
        texts = sorted({ref for ref in refs if isinstance(ref, str)})
        known: dict[PersonRef, int] = {}
        for chunk in _chunks(ids):
            found = conn.execute(sa.select(person.c.person_id).where(person.c.person_id.in_(chunk)))
            known.update({int(pid): int(pid) for pid in found.scalars()})
        column = person.c.person_source_value
        for chunk in _chunks(texts):
            found_rows = conn.execute(
                sa.select(column, person.c.person_id).where(column.in_(chunk))
            )
            known.update({str(value): int(pid) for value, pid in found_rows})
        return known

    def _source_values(self, conn: sa.Connection, person_ids: list[int]) -> dict[int, str | None]:
        person = self.store.table("person")
        values: dict[int, str | None] = {}
        for chunk in _chunks(sorted(set(person_ids))):
            rows = conn.execute(
                sa.select(person.c.person_id, person.c.person_source_value).where(
                    person.c.person_id.in_(chunk)
                )
            )
            values.update({int(pid): value for pid, value in rows})
        return values

    def _append(self, conn: sa.Connection, study_id: str, changes: list[_Change], by: str) -> None:
        """Log every change in order; upsert each person's latest decision."""
        if not changes:
            return
        if not self.store.embedded:  # one writer at a time numbers the log
            conn.execute(sa.text(f"LOCK TABLE {_qualified(self._log)} IN SHARE ROW EXCLUSIVE MODE"))
        last = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(self._log.c.seq), 0))
        ).scalar_one()
        latest: dict[int, tuple[int, _Change]] = {}
        log_rows = []
        for offset, change in enumerate(changes, start=1):
            seq = int(last) + offset
            latest[change.person_id] = (seq, change)
            log_rows.append(
                {"seq": seq, "study_id": study_id, "person_id": change.person_id,
                 "person_source_value": change.source_value, "decision": change.decision.value,
                 "decided_at": change.at, "recorded_by": by, "source": change.source}
            )  # fmt: skip
        conn.execute(self._log.insert(), log_rows)
        for decision in Decision:
            rows = [
                _consent_row(study_id, seq, change, by)
                for seq, change in latest.values()
                if change.decision is decision
            ]
            if rows:
                conn.execute(_upsert(self._consent, decision), rows)


def _state(
    conn: sa.Connection, store: OmopStore, consent: sa.Table, log: sa.Table, study_id: str
) -> ConsentState:
    person = store.table("person")
    granted = sa.select(consent.c.person_id).where(
        consent.c.study_id == study_id, consent.c.decision == Decision.GRANTED.value
    )
    n = conn.execute(
        sa.select(sa.func.count()).select_from(person).where(person.c.person_id.in_(granted))
    ).scalar_one()
    mark = conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(log.c.seq), 0)).where(log.c.study_id == study_id)
    ).scalar_one()
    return ConsentState(int(n), int(mark))


def _consent_row(study_id: str, seq: int, change: _Change, by: str) -> dict[str, object]:
    granted = change.decision is Decision.GRANTED
    return {
        "study_id": study_id,
        "person_id": change.person_id,
        "person_source_value": change.source_value,
        "decision": change.decision.value,
        "granted_at": change.at if granted else None,
        "revoked_at": None if granted else change.at,
        "recorded_by": by,
        "source": change.source,
        "log_seq": seq,
    }


def _upsert(consent: sa.Table, decision: Decision) -> sa.Insert:
    statement = insert(consent)
    kept = {"decision", "recorded_by", "source", "log_seq", "person_source_value"}
    # A revocation keeps the time consent was first granted; a new grant clears the revocation.
    kept |= {"granted_at", "revoked_at"} if decision is Decision.GRANTED else {"revoked_at"}
    return statement.on_conflict_do_update(
        index_elements=[consent.c.study_id, consent.c.person_id],
        set_={name: statement.excluded[name] for name in sorted(kept)},
    )


def _qualified(table: sa.Table) -> str:
    return f'"{table.schema}"."{table.name}"'


def _chunks(values: Sequence[PersonRef]) -> Iterable[Sequence[PersonRef]]:
    for start in range(0, len(values), 5000):
        yield values[start : start + 5000]
