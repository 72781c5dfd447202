"""Recording consent and reading under it, on the embedded DuckDB store and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medfed.data.consent import Consents, Decision, consented_reader
from medfed.data.omop.store import OmopStore, open_store, person_tables
from medfed.errors import ConfigError, ConsentError
from tests.data.consent.conftest import AT, PATIENTS, fill


def test_grant_and_revoke_by_patient_id_or_person_id_are_logged_in_order(
    store: OmopStore,
) -> None:
    consents = Consents(store)
    later = AT + dt.timedelta(days=1)

    assert consents.grant("s1", ["p1", "p2", 3], "alice", AT).consented_n == 3
    state = consents.revoke("s1", [2], "bob", later, source="paper form 17")

    assert (state.consented_n, state.watermark) == (2, 4)
    summary = consents.show("s1")
    assert (summary.granted, summary.revoked, summary.watermark) == (2, 1, 4)
    last = summary.tail[-1]
    assert (last.seq, last.person_id, last.person_source_value) == (4, 2, "p2")
    assert (last.decision, last.recorded_by, last.source) == (
        Decision.REVOKED,
        "bob",
        "paper form 17",
    )
    assert last.at == later
    assert [entry.seq for entry in consents.show("s1", tail=2).tail] == [3, 4]
    assert consents.state("s2").consented_n == 0  # studies are separate


def test_regranting_after_a_revocation_counts_again(store: OmopStore) -> None:
    consents = Consents(store)
    consents.grant("s1", ["p1"], "alice", AT)
    consents.revoke("s1", ["p1"], "alice", AT)

    assert consents.grant("s1", ["p1"], "alice", AT) == consents.state("s1")
    assert consents.state("s1").consented_n == 1
    assert consents.show("s1").revoked == 0


def test_an_unknown_patient_is_refused_by_name_and_nothing_is_recorded(store: OmopStore) -> None:
    consents = Consents(store)
    with pytest.raises(ConsentError, match=r"1 patient\(s\) not in the CDM.*nobody"):
        consents.grant("s1", ["p1", "nobody"], "alice", AT)
    with pytest.raises(ConsentError, match="time zone"):
        consents.grant("s1", ["p1"], "alice", dt.datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="study id"):
        consents.grant("S 1", ["p1"], "alice", AT)

    consents.create()
    assert consents.state("s1").watermark == 0


def test_the_reader_shows_only_consented_persons_in_every_person_table(store: OmopStore) -> None:
    consents = Consents(store)
    consents.grant("s1", ["p2", "p5"], "alice", AT)
    consents.enable("s1")

    with consented_reader(store, "s1") as reader:
        assert (reader.consented_n, reader.watermark) == (2, 2)
        for name in person_tables():
            table = store.table(name)
            ids = reader.connection.execute(sa.select(table.c.person_id).distinct()).scalars()
            assert sorted(ids) == [2, 5], name
    with store.engine.connect() as conn:  # the steward still reads everyone
        person = store.table("person")
        assert conn.execute(sa.select(sa.func.count()).select_from(person)).scalar_one() == 6


def test_a_revocation_drops_n_from_the_next_read(store: OmopStore) -> None:
    consents = Consents(store)
    consents.grant("s1", list(PATIENTS), "alice", AT)
    consents.enable("s1")
    with consented_reader(store, "s1") as first:
        before = (first.consented_n, first.watermark)

    consents.revoke("s1", ["p4"], "alice", AT)

    with consented_reader(store, "s1") as second:
        condition = store.table("condition_occurrence")
        rows = second.connection.execute(sa.select(sa.func.count()).select_from(condition))
        assert before == (6, 6)
        assert (second.consented_n, second.watermark) == (5, 7)
        assert rows.scalar_one() == 5


def test_an_embedded_reader_needs_no_enable_step_and_withholds_unlinked_tables(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "omop.duckdb")
    store.create()
    fill(store)
    Consents(store).grant("s1", ["p1"], "alice", AT)
    try:
        with consented_reader(store, "s1") as reader:
            assert reader.consented_n == 1
            with pytest.raises(sa.exc.DBAPIError, match="note_nlp"):
                reader.connection.execute(sa.select(store.table("note_nlp")))
    finally:
        store.close()


_steps = st.lists(st.tuples(st.sampled_from(PATIENTS), st.booleans()), max_size=12)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
def test_n_is_the_persons_whose_last_decision_is_a_grant(
    embedded_store: OmopStore, steps: list[tuple[str, bool]]
) -> None:
    study = f"h{next(_studies)}"  # one store, a fresh study per example
    consents = Consents(embedded_store)
    last: dict[str, bool] = {}
    for patient, granted in steps:
        record = consents.grant if granted else consents.revoke
        record(study, [patient], "alice", AT)
        last[patient] = granted

    with consented_reader(embedded_store, study) as reader:
        assert reader.consented_n == sum(last.values())
        assert reader.watermark == (consents.show(study).tail[-1].seq if steps else 0)


_studies = itertools.count()


@pytest.fixture
def embedded_store(tmp_path: Path) -> Iterator[OmopStore]:
    store = open_store(tmp_path / "omop.duckdb")
    store.create()
    fill(store)
    yield store
    store.close()
