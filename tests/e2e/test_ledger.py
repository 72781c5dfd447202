"""The ledger end to end over mTLS: what a study leaves in it, what every hospital verifies,
and what a coordinator that rewrites history or forges attribution runs into."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.ledger import kinds
from medfed.ledger.entry import parse_line
from medfed.ledger.members import members as read_members
from medfed.ledger.updates import sign_header
from medfed.node.client import _update_frames
from medfed.node.ledger import FAULT_FILE
from medfed.pki.signer import CertificateSigner
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.db import LedgerHeadRow, LedgerRow
from medfed.store.state import StateStore
from tests.e2e.harness import HOSPITALS, Network, small_study
from tests.e2e.hostile import HONEST, HOSTILE, Hostile

runner = CliRunner()


def _export(network: Network, path: Path) -> list[dict[str, object]]:
    lines = network.admin.ledger()
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return [json.loads(line) for line in lines]


def test_a_study_leaves_a_ledger_every_hospital_and_an_auditor_verify(
    network: Network, tmp_path: Path
) -> None:
    network.start_coordinator()
    network.start_nodes()
    study_id = network.submit(small_study(rounds=2))
    status = network.wait_done(study_id, timeout_s=120)
    assert status.state == "completed", status.message
    time.sleep(1.0)  # the evaluation of the last round may still be in flight
    exported = tmp_path / "ledger.jsonl"
    entries = _export(network, exported)

    ca = network.consortium.ca_dir / "ca.crt"
    verified = runner.invoke(root, ["audit", "verify", str(exported), "--ca", str(ca)])
    assert verified.exit_code == 0, verified.output
    assert "ledger verifies" in verified.output and "8 signed updates" in verified.output

    mine = [e for e in entries if e["study"] == study_id]
    assert [e["kind"] for e in mine] == [kinds.STUDY_SUBMITTED, kinds.STUDY_STARTED,
                                         kinds.ROUND_COMMITTED, kinds.ROUND_COMMITTED,
                                         kinds.REPUTATION, kinds.STUDY_COMPLETED]  # fmt: skip
    for entry, committed in zip(mine[2:4], status.rounds, strict=True):
        payload = entry["payload"]
        assert isinstance(payload, dict)
        assert payload["model_sha256"] == committed.model_sha256
        assert sorted(u["node"] for u in payload["updates"]) == sorted(HOSPITALS)
    joined = {e["payload"]["name"] for e in entries if e["kind"] == kinds.MEMBER_JOINED}  # type: ignore[index]
    assert set(HOSPITALS) <= joined

    coordinator_lines = exported.read_bytes().splitlines()
    for node in HOSPITALS:
        copy = (network.consortium.node_state(node) / "ledger.jsonl").read_bytes().splitlines()
        assert len(copy) >= 6 and copy == coordinator_lines[: len(copy)], node

    admin = str(network.consortium.admin_config)
    exported_by_cli = tmp_path / "cli.jsonl"
    said = runner.invoke(
        root, ["audit", "export", "--config", admin, "--out", str(exported_by_cli)]
    )
    assert said.exit_code == 0, said.output
    assert exported_by_cli.read_bytes().splitlines()[: len(entries)] == coordinator_lines
    shown = runner.invoke(root, ["audit", "show", "--study", study_id, "--config", admin])
    assert shown.exit_code == 0 and "round 2: model" in shown.output and "4 signed" in shown.output

    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(exported.read_bytes().replace(b'"accepted":4', b'"accepted":3', 1))
    refused = runner.invoke(root, ["audit", "verify", str(tampered), "--ca", str(ca)])
    assert refused.exit_code == 2 and "was altered" in refused.output


def test_a_coordinator_that_rewrites_history_is_refused_by_every_hospital(
    network: Network,
) -> None:
    coordinator = network.start_coordinator()
    network.start_nodes()
    first = network.submit(small_study(rounds=1, eval_every=0))
    assert network.wait_done(first, timeout_s=90).state == "completed"
    time.sleep(1.5)  # heartbeats: every node has verified the whole ledger by now

    _rewrite_last_entries(coordinator.state, network, drop=2)
    second = network.submit(small_study(rounds=1, eval_every=0, round_deadline_s=10.0))
    status = network.wait_until(second, lambda s: len(network.rejections(second)) >= 4)
    reasons = network.rejections(second)
    assert {r.split(":")[0] for r in reasons} >= set(HOSPITALS), reasons
    assert all("ledger" in r for r in reasons), reasons
    assert status.completed_rounds == 0
    for node in HOSPITALS:
        assert (network.consortium.node_state(node) / FAULT_FILE).exists()


def _rewrite_last_entries(state: StateStore, network: Network, drop: int) -> None:
    """What a dishonest coordinator could do with its own key: drop its newest entries and sign
    a different history from there."""
    head = state.ledger_head()
    assert head is not None
    keep = head.seq - drop
    kept = state.ledger_entries(keep, 1)[0]
    with Session(state._engines.write) as session, session.begin():  # the operator's own access
        session.execute(delete(LedgerRow).where(LedgerRow.seq > keep))
        session.execute(update(LedgerHeadRow).values(seq=keep, hash=kept.hash))
    state.append_ledger(kinds.STUDY_CANCELLED, "s-rewritten", {"message": "never happened"},
                        time.time())  # fmt: skip


def test_forged_replayed_or_altered_updates_are_rejected_and_recorded(
    network: Network,
    hostile: Hostile,
) -> None:
    from tests.e2e.harness import passthrough_study

    study_id = network.submit(passthrough_study(rounds=2, min_nodes=3, round_deadline_s=15.0))
    certs = network.consortium.node_certs("cleveland")
    other = CertificateSigner.from_files(certs / "cleveland.crt", certs / "cleveland.key")
    own_certs = network.consortium.node_certs(HOSTILE)
    own = CertificateSigner.from_files(own_certs / f"{HOSTILE}.crt", own_certs / f"{HOSTILE}.key")

    task = hostile.task()
    weights = {k: v + 0.001 for k, v in hostile.model(task).items()}
    signed_by_other = _header(task, weights, other)
    reply = _send(hostile, signed_by_other, weights)
    assert not reply.accepted and "does not verify with 'va_long_beach'" in reply.reason

    task2 = hostile.task()
    assert task2.round == 2
    replay = _header(task, weights, own)  # signed for round 1 ...
    replay.task_id, replay.round = task2.task_id, task2.round  # ... sent in round 2
    reply = _send(hostile, replay, weights)
    assert not reply.accepted and "another study, round or task" in reply.reason
    hostile.refuse_evaluation()

    status = network.wait_done(study_id, timeout_s=60)
    assert status.completed_rounds == 2
    entries = [json.loads(line) for line in network.admin.ledger(study_id)]
    rounds = [e["payload"] for e in entries if e["kind"] == kinds.ROUND_COMMITTED]
    assert [r["rejected"][0]["node"] for r in rounds] == [HOSTILE, HOSTILE]
    assert all("signature" in r["rejected"][0]["reason"] for r in rounds)
    assert all(HOSTILE not in {u["node"] for u in r["updates"]} for r in rounds)


def test_a_bit_flipped_update_is_rejected(network: Network, hostile: Hostile) -> None:
    from tests.e2e.harness import passthrough_study

    network.submit(passthrough_study(rounds=1, min_nodes=3, round_deadline_s=15.0))
    own_certs = network.consortium.node_certs(HOSTILE)
    own = CertificateSigner.from_files(own_certs / f"{HOSTILE}.crt", own_certs / f"{HOSTILE}.key")
    task = hostile.task()
    weights = {k: v + 0.001 for k, v in hostile.model(task).items()}
    header = _header(task, weights, own)
    flipped = {k: v.copy() for k, v in weights.items()}
    flipped["w"].view(np.uint8)[3] ^= 0x10
    reply = _send(hostile, header, flipped)
    assert not reply.accepted and "does not match the SHA-256 it signed" in reply.reason


def _header(
    task: pb.Task, weights: dict[str, np.ndarray], signer: CertificateSigner
) -> pb.UpdateHeader:
    header = pb.UpdateHeader(
        task_id=task.task_id,
        study_id=task.study_id,
        round=task.round,
        num_examples=10,
        update_sha256=tensors.weights_sha256(weights),
    )
    sign_header(header, signer.sign)
    return header


def _send(
    hostile: Hostile, header: pb.UpdateHeader, weights: dict[str, np.ndarray]
) -> pb.SubmitReply:
    frames = _update_frames(header, weights, "")  # no manifest hash: the signature must catch it
    return hostile.client._submit(frames, timeout=30)  # type: ignore[no-any-return]


def test_a_finished_study_records_contributions_reputation_and_rewards(
    network: Network, hostile: Hostile
) -> None:
    from tests.e2e.harness import passthrough_study

    study_id = network.submit(passthrough_study(rounds=2, min_nodes=3, round_deadline_s=15.0))
    for _ in range(2):
        task = hostile.task()
        weights = hostile.model(task)
        weights["w"][0] = np.nan
        assert not hostile.client.submit(task, 10, {}, weights).accepted
    hostile.refuse_evaluation()
    assert network.wait_done(study_id, timeout_s=60).state == "completed"

    entries = [json.loads(line) for line in network.admin.ledger(study_id)]
    kinds_seen = [e["kind"] for e in entries]
    assert kinds_seen.index(kinds.REPUTATION) < kinds_seen.index(kinds.STUDY_COMPLETED)
    record = next(e["payload"] for e in entries if e["kind"] == kinds.REPUTATION)
    sites = record["sites"]
    assert sites[HOSTILE]["rejected"] == 2 and sites[HOSTILE]["reward_points"] == 0
    assert sites[HOSTILE]["reputation"] < min(sites[h]["reputation"] for h in HONEST)
    assert sum(s["reward_points"] for s in sites.values()) == record["reward_pot"]
    assert record["penalty_candidates"] == [] or HOSTILE in record["penalty_candidates"]

    shown = runner.invoke(root, ["study", "status", study_id, "--sites", "--config",
                                 str(network.consortium.admin_config)])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "reputation" in shown.output and HOSTILE in shown.output
    listed = runner.invoke(root, ["consortium", "members", "--config",
                                  str(network.consortium.admin_config)])  # fmt: skip
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if "│" in line}
    assert HOSTILE in rows and "researcher" in rows
    members = read_members(parse_line(x) for x in network.admin.ledger())
    score = {m.name: m.reputation for m in members}
    assert score[HOSTILE] is not None and score[HOSTILE] < min(score[h] or 0 for h in HONEST)
    assert {m.name: m.reward_points for m in members}[HOSTILE] == 0
