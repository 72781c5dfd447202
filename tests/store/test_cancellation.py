from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from medfed.errors import StoreError
from medfed.store import StateStore
from medfed.store.db import CancellationRow
from tests.store.test_state_store import make_round, new_study


def test_a_cancelled_study_records_who_and_why_and_stays_cancelled(store: StateStore) -> None:
    new_study(store)
    store.set_state("s1", "waiting", "waiting for hungary", now=101.0)

    store.cancel_study("s1", "alice", "wrong dataset", now=102.0)
    store.set_state("s1", "running", "round 1 of 5", now=103.0)  # a runner a step behind

    record = store.study("s1")
    assert (record.state, record.message, record.updated_unix) == (
        "cancelled",
        "cancelled by alice: wrong dataset",
        102.0,
    )
    with Session(store._engines.read) as session:
        rows = session.scalars(select(CancellationRow)).all()
        assert [(r.study_id, r.cancelled_by, r.reason, r.cancelled_unix) for r in rows] == [
            ("s1", "alice", "wrong dataset", 102.0)
        ]


def test_no_round_commits_after_a_cancellation(store: StateStore) -> None:
    new_study(store)
    store.cancel_study("s1", "alice", "", now=101.0)

    with pytest.raises(StoreError, match="cancelled"):
        store.commit_round(make_round("s1", 1))

    assert store.study("s1").completed_rounds == 0
    assert store.rounds("s1") == []


def test_an_ended_or_unknown_study_cannot_be_cancelled(store: StateStore) -> None:
    new_study(store)
    store.set_state("s1", "completed", "5 rounds committed", now=101.0)

    with pytest.raises(StoreError, match="already completed"):
        store.cancel_study("s1", "alice", "", now=102.0)
    with pytest.raises(StoreError, match="not known"):
        store.cancel_study("nope", "alice", "", now=102.0)
    with pytest.raises(StoreError, match="not known"):
        store.set_state("nope", "running", "", now=102.0)
    assert store.study("s1").state == "completed"
