"""Study state as the coordinator sees it: nodes, studies, committed rounds, rejections.

The invariant that matters most: a round is committed or it did not happen, and each round is
committed exactly once and in order. ``commit_round`` enforces it inside the database with a
conditional UPDATE (``... WHERE completed_rounds = round - 1``) whose row count decides the winner,
so two coordinator threads racing on the same round cannot both succeed, on SQLite or PostgreSQL.

Every call opens its own session and transaction, so one ``StateStore`` serves many gRPC threads.
Times are parameters (``now``), never read from the clock here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medfed.errors import StoreError
from medfed.ledger import kinds
from medfed.store.db import (
    CancellationRow,
    DatasetSizeRow,
    EncryptedEvalRow,
    LedgerRow,
    NodeRow,
    RejectionRow,
    RoundNodeMetricsRow,
    RoundRow,
    StudyRow,
    make_engines,
)
from medfed.store.ledger import LedgerWriter
from medfed.store.ledger_payloads import round_payload
from medfed.store.ledger_state import LedgerState
from medfed.store.models import check_sha256
from medfed.store.records import (
    EncryptedEval,
    MetricsKind,
    NodeRecord,
    NodeRoundMetrics,
    RoundRecord,
    StudyRecord,
    check_kinds,
    float_metrics,
    join_rejection,
    node_rows,
    round_record,
    round_row,
    split_rejection,
    study_record,
)

CANCELLED = "cancelled"
FINISHED_STATES = ("completed", "failed", CANCELLED)
"""States a study never leaves: its runner is not resumed and watchers stop."""

__all__ = [
    "CANCELLED",
    "FINISHED_STATES",
    "MetricsKind",
    "NodeRecord",
    "NodeRoundMetrics",
    "RoundRecord",
    "StateStore",
    "StudyRecord",
]


class StateStore(LedgerState):
    """The coordinator's persistent state over SQLAlchemy (SQLite file or PostgreSQL URL).

    ``schema`` (PostgreSQL only) keeps the tables in their own schema, created if missing, so
    several coordinators or test runs can share one database.
    """

    def __init__(self, url: str | URL, *, schema: str | None = None) -> None:
        self._engines = make_engines(url, schema)
        self._dialect = self._engines.base.dialect.name
        self._ledger: LedgerWriter | None = None

    @classmethod
    def sqlite(cls, path: Path) -> StateStore:
        return cls(URL.create("sqlite", database=str(path)))

    def close(self) -> None:
        self._engines.base.dispose()

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with Session(self._engines.read) as session, session.begin():
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with Session(self._engines.write) as session, session.begin():
            yield session

    # -- nodes ------------------------------------------------------------------------------------

    def node_seen(self, name: str, datasets: Sequence[str], now: float) -> None:
        """Record that ``name`` checked in offering ``datasets`` (insert or update, race-free)."""
        values = {
            "name": name,
            "datasets_json": json.dumps(list(datasets)),
            "first_seen_unix": now,
            "last_seen_unix": now,
        }
        with self._writing() as session:
            session.execute(_upsert_node(self._dialect, values))

    def record_sizes(
        self, node: str, dataset: str, train_rows: int, test_rows: int, now: float
    ) -> tuple[int, int] | None:
        """Keep ``node``'s announced split sizes of ``dataset`` unless they are the ones it last
        announced; returns the previous (train, test) when they changed, None otherwise."""
        latest = (
            select(DatasetSizeRow)
            .where(DatasetSizeRow.node == node, DatasetSizeRow.dataset == dataset)
            .order_by(DatasetSizeRow.id.desc())
            .limit(1)
        )
        with self._writing() as session:
            row = session.scalars(latest).first()
            before = (row.train_rows, row.test_rows) if row is not None else None
            if before == (train_rows, test_rows):
                return None
            session.add(DatasetSizeRow(node=node, dataset=dataset, train_rows=train_rows,
                                       test_rows=test_rows, announced_unix=now))  # fmt: skip
            return before

    def nodes(self) -> list[NodeRecord]:
        with self._reading() as session:
            rows = session.scalars(select(NodeRow).order_by(NodeRow.name)).all()
            return [
                NodeRecord(
                    name=r.name,
                    last_seen_unix=r.last_seen_unix,
                    datasets=tuple(json.loads(r.datasets_json)),
                    first_seen_unix=r.first_seen_unix,
                )
                for r in rows
            ]

    # -- studies ----------------------------------------------------------------------------------

    def create_study(
        self,
        study_id: str,
        name: str,
        spec_json: str,
        model_sha256: str,
        now: float,
        by: str = "",
        spec_sha256: str = "",
    ) -> StudyRecord:
        """A new study in state ``pending`` with no round done, starting from ``model_sha256``."""
        if not study_id:
            raise StoreError("a study needs a non-empty id")
        check_sha256(model_sha256)
        row = StudyRow(
            study_id=study_id,
            name=name,
            spec_json=spec_json,
            state="pending",
            completed_rounds=0,
            model_sha256=model_sha256,
            state_sha256="",
            message="",
            created_unix=now,
            updated_unix=now,
        )
        try:
            with self._writing() as session:
                if session.get(StudyRow, study_id) is not None:
                    raise StoreError(f"study {study_id!r} already exists")
                session.add(row)
                session.flush()
                payload = {"name": name, "spec_sha256": spec_sha256, "model_sha256": model_sha256,
                           "submitted_by": by}  # fmt: skip
                self._record(session, kinds.STUDY_SUBMITTED, study_id, payload, now)
                return study_record(row)
        except IntegrityError as exc:  # created by another thread between the check and the insert
            raise StoreError(f"study {study_id!r} already exists") from exc

    def study(self, study_id: str) -> StudyRecord:
        with self._reading() as session:
            return study_record(_require_study(session, study_id))

    def studies(self) -> list[StudyRecord]:
        with self._reading() as session:
            order = (StudyRow.created_unix, StudyRow.study_id)
            return [study_record(r) for r in session.scalars(select(StudyRow).order_by(*order))]

    def set_state(self, study_id: str, state: str, message: str, now: float) -> None:
        """A cancelled study stays cancelled: a runner finishing a step after the researcher
        cancelled cannot overwrite it (the update then changes nothing)."""
        stmt = (
            update(StudyRow)
            .where(StudyRow.study_id == study_id, StudyRow.state != CANCELLED)
            .values(state=state, message=message, updated_unix=now)
        )
        with self._writing() as session:
            before = session.get(StudyRow, study_id, with_for_update=True)
            if _rowcount(session.execute(stmt)) != 1:
                _require_study(session, study_id)
            elif before is not None and self._ledger is not None:
                self._record_state(session, study_id, state, message, now)

    def _record_state(
        self, session: Session, study_id: str, state: str, message: str, now: float
    ) -> None:
        """A study's start (once) and its end are ledger entries; its waits and rounds are not."""
        kind = kinds.STUDY_STATES.get(state)
        if kind is None:
            return
        seen = select(LedgerRow.seq).where(LedgerRow.study == study_id, LedgerRow.kind == kind)
        if session.scalars(seen.limit(1)).first() is None:
            self._record(session, kind, study_id, {"message": message}, now)

    def cancel_study(self, study_id: str, by: str, reason: str, now: float) -> None:
        """Cancel a study that has not ended, recording who, when and why; StoreError if it is
        unknown or already over. No round commits after this (see ``commit_round``)."""
        message = f"cancelled by {by}" + (f": {reason}" if reason else "")
        stmt = (
            update(StudyRow)
            .where(StudyRow.study_id == study_id, StudyRow.state.not_in(FINISHED_STATES))
            .values(state=CANCELLED, message=message, updated_unix=now)
        )
        with self._writing() as session:
            if _rowcount(session.execute(stmt)) != 1:
                row = _require_study(session, study_id)
                raise StoreError(f"study {study_id!r} is already {row.state}")
            session.add(
                CancellationRow(
                    study_id=study_id, cancelled_by=by, reason=reason, cancelled_unix=now
                )
            )
            payload = {"message": message, "by": by, "reason": reason}
            self._record(session, kinds.STUDY_CANCELLED, study_id, payload, now)

    # -- rounds -----------------------------------------------------------------------------------

    def commit_round(self, record: RoundRecord) -> None:
        """Commit ``record`` as the study's next round, atomically, or refuse it with StoreError
        (also once the study is cancelled).

        The study row is advanced by ``UPDATE ... WHERE completed_rounds = round - 1``: on
        PostgreSQL a concurrent commit blocks on the row lock and then finds the condition false;
        on SQLite writers hold the database's write lock from BEGIN IMMEDIATE. Either way exactly
        one of two racing commits for the same round sees one row updated; the other is refused,
        and a skipped or repeated round never matches.
        """
        check_sha256(record.model_sha256)
        if record.state_sha256:
            check_sha256(record.state_sha256)
        check_kinds(record.per_node)
        rejections = [split_rejection(text) for text in record.rejections]
        advance = (
            update(StudyRow)
            .where(
                StudyRow.study_id == record.study_id,
                StudyRow.completed_rounds == record.round - 1,
                StudyRow.state != CANCELLED,
            )
            .values(
                completed_rounds=record.round,
                model_sha256=record.model_sha256,
                state_sha256=record.state_sha256,
                updated_unix=record.committed_unix,
            )
        )
        with self._writing() as session:
            if _rowcount(session.execute(advance)) != 1:
                raise _round_refused(session, record)
            session.add(round_row(record))
            session.flush()  # the round row must exist before rows that reference it
            session.add_all(node_rows(record.study_id, record.round, record.per_node))
            session.add_all(
                RejectionRow(
                    study_id=record.study_id,
                    round=record.round,
                    node=node,
                    reason=reason,
                    recorded_unix=record.committed_unix,
                    in_commit=True,
                )
                for node, reason in rejections
            )
            if self._ledger is not None:
                payload = round_payload(record, rejections)
                self._record(session, kinds.ROUND_COMMITTED, record.study_id, payload,
                             record.committed_unix)  # fmt: skip

    def add_eval(
        self,
        study_id: str,
        round: int,
        per_node: Sequence[NodeRoundMetrics],
        metrics: Mapping[str, float],
    ) -> None:
        """Attach federated-evaluation results to committed round ``round``.

        ``metrics`` are merged into the round's metrics (new keys win); ``per_node`` rows are added.
        The round row is locked first so two evaluations cannot lose each other's metrics.
        """
        check_kinds(per_node)
        with self._writing() as session:
            row = session.get(RoundRow, (study_id, round), with_for_update=True)
            if row is None:
                raise StoreError(f"study {study_id!r} has no committed round {round} to evaluate")
            merged = json.loads(row.metrics_json) | float_metrics(metrics)
            row.metrics_json = json.dumps(merged)
            session.add_all(node_rows(study_id, round, per_node))

    def add_encrypted_eval(self, study_id: str, round: int, result: EncryptedEval) -> None:
        check_sha256(result.sha256)
        with self._writing() as session:
            if session.get(RoundRow, (study_id, round)) is None:
                raise StoreError(f"study {study_id!r} has no committed round {round} to evaluate")
            session.merge(
                EncryptedEvalRow(
                    study_id=study_id, round=round, sha256=result.sha256,
                    names_json=json.dumps(list(result.names)), sites=result.sites,
                )
            )  # fmt: skip

    def encrypted_evals(self, study_id: str) -> dict[int, EncryptedEval]:
        with self._reading() as session:
            rows = session.scalars(
                select(EncryptedEvalRow).where(EncryptedEvalRow.study_id == study_id)
            ).all()
            return {
                r.round: EncryptedEval(r.sha256, tuple(json.loads(r.names_json)), r.sites)
                for r in rows
            }

    def rounds(self, study_id: str) -> list[RoundRecord]:
        """The study's committed rounds in order, each with its per-node rows and own rejections."""
        with self._reading() as session:
            _require_study(session, study_id)
            rows = session.scalars(
                select(RoundRow).where(RoundRow.study_id == study_id).order_by(RoundRow.round)
            ).all()
            per_node = _per_node_by_round(session, study_id)
            rejections = _commit_rejections_by_round(session, study_id)
            return [round_record(r, per_node[r.round], rejections[r.round]) for r in rows]

    # -- rejections -------------------------------------------------------------------------------

    def record_rejection(
        self, study_id: str, round: int, node: str, reason: str, now: float
    ) -> None:
        """Record a refusal outside a round commit (a task refused, a reply dropped in a failed
        round). Rejections that a commit carries belong in ``RoundRecord.rejections`` instead."""
        with self._writing() as session:
            _require_study(session, study_id)
            session.add(
                RejectionRow(
                    study_id=study_id,
                    round=round,
                    node=node,
                    reason=reason,
                    recorded_unix=now,
                    in_commit=False,
                )
            )

    def rejections(self, study_id: str) -> list[tuple[int, str, str]]:
        """Every rejection of the study, committed or recorded alone, as (round, node, reason)."""
        with self._reading() as session:
            _require_study(session, study_id)
            stmt = (
                select(RejectionRow)
                .where(RejectionRow.study_id == study_id)
                .order_by(RejectionRow.round, RejectionRow.id)
            )
            return [(r.round, r.node, r.reason) for r in session.scalars(stmt)]


# -- helpers --------------------------------------------------------------------------------------


def _upsert_node(dialect: str, values: dict[str, Any]) -> Executable:
    """INSERT ... ON CONFLICT DO UPDATE: two first check-ins of one node cannot collide."""
    if dialect == "postgresql":
        pg = pg_insert(NodeRow).values(values)
        return pg.on_conflict_do_update(
            index_elements=[NodeRow.name],
            set_={
                "datasets_json": pg.excluded.datasets_json,
                "last_seen_unix": pg.excluded.last_seen_unix,
            },
        )
    lite = sqlite_insert(NodeRow).values(values)
    return lite.on_conflict_do_update(
        index_elements=[NodeRow.name],
        set_={
            "datasets_json": lite.excluded.datasets_json,
            "last_seen_unix": lite.excluded.last_seen_unix,
        },
    )


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _unknown_study(study_id: str) -> StoreError:
    return StoreError(f"study {study_id!r} is not known to this coordinator")


def _require_study(session: Session, study_id: str) -> StudyRow:
    row = session.get(StudyRow, study_id)
    if row is None:
        raise _unknown_study(study_id)
    return row


def _round_refused(session: Session, record: RoundRecord) -> StoreError:
    row = _require_study(session, record.study_id)
    if row.state == CANCELLED:
        return StoreError(f"study {record.study_id!r} was cancelled: round {record.round} refused")
    return StoreError(
        f"study {record.study_id!r}: round {record.round} refused, {row.completed_rounds} rounds "
        f"are committed so the next must be round {row.completed_rounds + 1}"
    )


def _per_node_by_round(session: Session, study_id: str) -> dict[int, list[NodeRoundMetrics]]:
    stmt = (
        select(RoundNodeMetricsRow)
        .where(RoundNodeMetricsRow.study_id == study_id)
        .order_by(RoundNodeMetricsRow.id)
    )
    out: dict[int, list[NodeRoundMetrics]] = defaultdict(list)
    for r in session.scalars(stmt):
        kind = cast(MetricsKind, r.kind)
        out[r.round].append(
            NodeRoundMetrics(r.node, kind, r.num_examples, json.loads(r.metrics_json))
        )
    return out


def _commit_rejections_by_round(session: Session, study_id: str) -> dict[int, list[str]]:
    stmt = (
        select(RejectionRow)
        .where(RejectionRow.study_id == study_id, RejectionRow.in_commit.is_(True))
        .order_by(RejectionRow.id)
    )
    out: dict[int, list[str]] = defaultdict(list)
    for r in session.scalars(stmt):
        out[r.round].append(join_rejection(r.node, r.reason))
    return out
