"""A short real history written through the state store: members, a study, signed rounds."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from medfed.ledger.entry import Entry
from medfed.ledger.updates import UpdateVerifier
from medfed.pki.identity import Role
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.ledger import LedgerWriter
from medfed.store.records import NodeRoundMetrics, RoundRecord
from medfed.store.state import StateStore
from tests.ledger.conftest import T0, LedgerWorld

SHA = "ab" * 32


def signed_header(
    world: LedgerWorld, node: str, study: str, round_: int, data: bytes
) -> pb.UpdateHeader:
    from medfed.ledger.updates import sign_header

    header = pb.UpdateHeader(
        task_id=f"t-{study}-{round_}-{node}", study_id=study, round=round_, num_examples=10,
        metrics={"loss": 0.5}, update_sha256=hashlib.sha256(data).hexdigest(),
    )  # fmt: skip
    sign_header(header, world.nodes[node].signer.sign)
    return header


def write_history(world: LedgerWorld, rounds: int = 3, study: str = "s-1") -> list[Entry]:
    store = world.store
    for i, party in enumerate(world.nodes.values()):
        store.record_member(party.name, Role.NODE.value, 100 + i, party.pem, T0 + 1)
    store.create_study(study, "heart", "{}", SHA, T0 + 2, by="researcher", spec_sha256="cd" * 32)
    store.set_state(study, "running", "round 1", T0 + 3)
    verifier = UpdateVerifier(world.ca)
    for r in range(1, rounds + 1):
        proofs = []
        for party in world.nodes.values():
            data = f"{party.name}-{r}".encode()
            header = signed_header(world, party.name, study, r, data)
            proof = verifier.verify(party.pem, party.name, header, hashlib.sha256(data).hexdigest())
            proofs.append(proof.to_json())
        record = RoundRecord(
            study_id=study, round=r, model_sha256=f"{r:02x}" * 32, selected=3, accepted=3,
            rejected=0, duration_s=1.0, committed_unix=T0 + 10 * r, metrics={"loss": 0.5},
            per_node=tuple(NodeRoundMetrics(n, "train", 10, {"epsilon": 0.1 * r})
                           for n in world.nodes),
            rejections=(), selected_nodes=tuple(world.nodes), updates=tuple(proofs),
        )  # fmt: skip
        store.commit_round(record)
    store.set_state(study, "completed", f"{rounds} rounds committed", T0 + 100)
    head = store.ledger_head()
    assert head is not None
    return store.ledger_entries(0, head.seq + 1)


def fork_store(world: LedgerWorld, where: Path) -> StateStore:
    """A copy of the coordinator's state as it is now (SQLite's backup API: the WAL included),
    opened with the same coordinator key: from here on it can sign a different history."""
    copy = where / "fork.sqlite"
    with sqlite3.connect(where / "state.sqlite") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    fork = StateStore.sqlite(copy)
    fork.open_ledger(LedgerWriter(world.coordinator, world.ca_pem), T0)
    return fork
