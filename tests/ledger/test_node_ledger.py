from __future__ import annotations

from pathlib import Path

import pytest

from medfed.errors import PolicyError
from medfed.ledger.entry import Head
from medfed.ledger.wire import to_proto
from medfed.node.ledger import FAULT_FILE, NodeLedger
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import StateStore
from tests.ledger.conftest import T0, LedgerWorld
from tests.ledger.helpers import SHA, fork_store, write_history


def _serving(store: StateStore, skip: int | None = None):  # type: ignore[no-untyped-def]
    def fetch(start: int) -> pb.LedgerPage:
        entries = [e for e in store.ledger_entries(start, 3) if e.seq != skip]
        return pb.LedgerPage(entries=[e.to_line() for e in entries])

    return fetch


def _head(store: StateStore) -> Head:
    head = store.ledger_head()
    assert head is not None
    return head


def test_a_node_catches_up_in_pages_keeps_a_copy_and_reloads_it(
    world: LedgerWorld, tmp_path: Path
) -> None:
    write_history(world, rounds=3)
    node = NodeLedger(tmp_path / "node", world.ca, _serving(world.store))
    (tmp_path / "node").mkdir()
    node.sync(_head(world.store))
    assert node.head == _head(world.store)
    again = NodeLedger(tmp_path / "node", world.ca, _serving(world.store))
    assert again.head == _head(world.store)  # re-verified from the hospital's own copy


def test_a_rewritten_history_is_refused_and_stays_refused(
    world: LedgerWorld, tmp_path: Path
) -> None:
    write_history(world, rounds=1)
    (tmp_path / "node").mkdir()
    node = NodeLedger(tmp_path / "node", world.ca, _serving(world.store))
    node.sync(_head(world.store))
    fork = fork_store(world, tmp_path)
    world.store.create_study("s-2", "seen", "{}", SHA, T0 + 300)
    node.sync(_head(world.store))
    fork.create_study("s-3", "rewritten", "{}", SHA, T0 + 300)
    fork.create_study("s-4", "and more", "{}", SHA, T0 + 301)
    rewritten = NodeLedger(tmp_path / "node", world.ca, _serving(fork))
    with pytest.raises(PolicyError) as refused:
        rewritten.sync(_head(fork))
    assert refused.value.code in ("ledger_fork", "ledger_equivocation")
    assert (tmp_path / "node" / FAULT_FILE).exists()
    with pytest.raises(PolicyError, match=r"remove .*ledger-fault\.txt") as still:
        rewritten.sync(_head(world.store))  # even the honest head: a steward must look first
    assert still.value.code == "ledger_fault"


def test_a_dropped_entry_or_a_hidden_head_is_refused(world: LedgerWorld, tmp_path: Path) -> None:
    write_history(world, rounds=2)
    for folder, fetch, shown in [
        ("a", _serving(world.store, skip=5), _head(world.store)),
        ("b", _serving(world.store), None),
    ]:
        (tmp_path / folder).mkdir()
        node = NodeLedger(tmp_path / folder, world.ca, fetch)
        if shown is None:
            node.sync(Head(3, world.store.ledger_entries(3, 1)[0].hash,
                           world.store.ledger_entries(3, 1)[0].signature))  # fmt: skip
        with pytest.raises(PolicyError, match=r"dropped|hiding history"):
            node.sync(shown)


def test_gossip_catches_a_coordinator_showing_two_histories(
    world: LedgerWorld, tmp_path: Path
) -> None:
    write_history(world, rounds=1)
    fork = fork_store(world, tmp_path)
    world.store.create_study("s-a", "shown to alpha", "{}", SHA, T0 + 300)
    fork.create_study("s-b", "shown to beta", "{}", SHA, T0 + 300)
    (tmp_path / "alpha").mkdir()
    (tmp_path / "beta").mkdir()
    alpha = NodeLedger(tmp_path / "alpha", world.ca, _serving(world.store))
    beta = NodeLedger(tmp_path / "beta", world.ca, _serving(fork))
    alpha.sync(_head(world.store))
    beta.sync(_head(fork))  # each alone sees a consistent chain
    assert beta.head is not None
    alpha.check_peers([pb.PeerHead(node="beta", head=to_proto(beta.head))])
    proof = (tmp_path / "alpha" / FAULT_FILE).read_text()
    assert "two different ledger entries" in proof and beta.head.signature.hex() in proof
    with pytest.raises(PolicyError, match="two different ledger entries"):
        alpha.sync(_head(world.store))
