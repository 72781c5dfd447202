from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from medfed.errors import EquivocationError, LedgerError, StoreError
from medfed.ledger import kinds
from medfed.ledger.chain import verify_entries
from medfed.ledger.entry import Entry, make_entry, parse_line
from medfed.store.ledger import LedgerWriter
from tests.ledger.conftest import T0, LedgerWorld
from tests.ledger.helpers import SHA, fork_store, write_history


def test_a_real_history_verifies_with_the_ca_alone(world: LedgerWorld) -> None:
    entries = write_history(world, rounds=3)
    verifier = verify_entries([parse_line(e.to_line()) for e in entries], world.ca)
    assert verifier.head == entries[-1].head
    assert [e.kind for e in entries] == [
        kinds.GENESIS, *[kinds.MEMBER_JOINED] * 3, kinds.STUDY_SUBMITTED, kinds.STUDY_STARTED,
        *[kinds.ROUND_COMMITTED] * 3, kinds.STUDY_COMPLETED,
    ]  # fmt: skip
    rounds = [e for e in entries if e.kind == kinds.ROUND_COMMITTED]
    assert [len(e.payload["updates"]) for e in rounds] == [3, 3, 3]
    assert rounds[1].payload["privacy"]["beta"] == {"epsilon": pytest.approx(0.2)}


def test_a_study_starts_once_in_the_ledger(world: LedgerWorld) -> None:
    world.store.create_study("s-2", "x", "{}", SHA, T0)
    for i in range(3):
        world.store.set_state("s-2", "running", f"round {i}", T0 + i)
        world.store.set_state("s-2", "waiting", "a node is offline", T0 + i)
    started = [e for e in world.store.ledger_entries(0, 100) if e.kind == kinds.STUDY_STARTED]
    assert len(started) == 1


@pytest.mark.parametrize("field", ["payload", "time_ms", "kind", "study", "prev"])
def test_changing_any_field_of_any_entry_is_detected(world: LedgerWorld, field: str) -> None:
    entries = write_history(world, rounds=2)
    for index in range(len(entries)):
        changed = list(entries)
        e = entries[index]
        value = {
            "payload": {**e.payload, "forged": True},
            "time_ms": e.time_ms + 1,
            "kind": "study.forged",
            "study": e.study + "x",
            "prev": "f" * 64,
        }[field]
        changed[index] = dataclasses.replace(e, **{field: value})
        with pytest.raises(LedgerError, match=rf"entry {index}\b"):
            verify_entries(changed, world.ca)


def test_a_rehashed_entry_without_the_coordinators_key_is_refused(world: LedgerWorld) -> None:
    entries = write_history(world, rounds=2)
    victim = entries[7]
    payload = {**victim.payload, "model_sha256": "00" * 32}
    node_key = next(
        iter(world.nodes.values())
    ).signer.sign  # a hospital's key, not the coordinator's
    forged = make_entry(victim.seq, victim.prev, victim.kind, victim.study, victim.time_ms,
                        payload, node_key)  # fmt: skip
    with pytest.raises(LedgerError, match="not signed by the coordinator"):
        verify_entries([*entries[:7], forged], world.ca)


def test_reordering_or_dropping_entries_is_detected(world: LedgerWorld) -> None:
    entries = write_history(world, rounds=3)
    swapped = [*entries[:4], entries[5], entries[4], *entries[6:]]
    with pytest.raises(LedgerError, match="reordered"):
        verify_entries(swapped, world.ca)
    with pytest.raises(LedgerError, match="dropped"):
        verify_entries([*entries[:6], *entries[7:]], world.ca)
    with pytest.raises(LedgerError, match="entry 0 was expected"):
        verify_entries(entries[1:], world.ca)


def test_a_coordinator_that_misattributes_an_update_is_caught(world: LedgerWorld) -> None:
    """Even re-signed by the coordinator, a recorded update its node did not sign fails."""
    entries = write_history(world, rounds=2)
    index = next(i for i, e in enumerate(entries) if e.kind == kinds.ROUND_COMMITTED)
    e = entries[index]
    updates = [dict(u) for u in e.payload["updates"]]
    updates[0]["header_sha256"] = "11" * 32
    rewritten = make_entry(e.seq, e.prev, e.kind, e.study, e.time_ms,
                           {**e.payload, "updates": updates}, world.coordinator)  # fmt: skip
    with pytest.raises(LedgerError, match="not signed by its certificate key"):
        verify_entries([*entries[:index], rewritten], world.ca)


def test_two_signed_histories_are_an_equivocation(world: LedgerWorld, tmp_path: Path) -> None:
    write_history(world, rounds=1, study="s-1")
    fork = fork_store(world, tmp_path)
    world.store.create_study("s-a", "shown to alpha", "{}", SHA, T0 + 200)
    fork.create_study("s-b", "shown to beta", "{}", SHA, T0 + 200)
    head_a, head_b = world.store.ledger_head(), fork.ledger_head()
    assert head_a is not None and head_b is not None and head_a.seq == head_b.seq
    verifier = verify_entries(world.store.ledger_entries(0, 1000), world.ca)
    with pytest.raises(EquivocationError, match=f"height {head_b.seq}.*{head_b.signature.hex()}"):
        verifier.check_head(head_b)
    forged = dataclasses.replace(head_b, signature=head_a.signature)
    with pytest.raises(LedgerError, match="not signed by the coordinator"):
        verifier.check_head(forged)


def test_a_failed_commit_leaves_neither_round_nor_entry(
    world: LedgerWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = write_history(world, rounds=1)

    def crash(*_args: object, **_kw: object) -> Entry:
        raise OSError("power cut between the round row and its ledger entry")

    monkeypatch.setattr(LedgerWriter, "append", crash)
    with pytest.raises(OSError, match="power cut"):
        write_history(world, rounds=1, study="s-9")
    assert world.store.ledger_entries(0, 1000) == entries
    with pytest.raises(StoreError, match="not known"):
        world.store.study("s-9")


def test_an_approval_the_hospital_did_not_sign_is_caught(world: LedgerWorld) -> None:
    from medfed.ledger.approvals import approval_bytes

    write_history(world, rounds=1)
    sha = "cd" * 32
    alpha, beta = world.nodes["alpha"], world.nodes["beta"]
    world.store.record_approval("alpha", sha, alpha.signer.sign(approval_bytes(sha)), T0 + 200)
    verify_entries(world.store.ledger_entries(0, 1000), world.ca)
    world.store.record_approval("beta", sha, alpha.signer.sign(approval_bytes(sha)), T0 + 201)
    assert world.store.approvals(sha) == {"alpha", "beta"}
    with pytest.raises(LedgerError, match="not signed by 'beta'"):
        verify_entries(world.store.ledger_entries(0, 1000), world.ca)
    assert beta.name == "beta"
