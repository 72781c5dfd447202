"""A study that requires its protocol approved by the hospitals' data stewards: it waits and
names who is missing, trains only where approved, and a changed spec needs approving again."""

from __future__ import annotations

import json

from medfed.coordinator.spec import spec_from_proto
from medfed.ledger import kinds
from medfed.ledger.chain import verify_entries
from medfed.ledger.entry import parse_line
from medfed.ledger.keys import load_ca
from medfed.node.protocols import ProtocolApprovals
from medfed.pki.signer import CertificateSigner
from tests.e2e.harness import HOSPITALS, Network, small_study


def _approve(network: Network, node: str, spec_sha256: str) -> None:
    certs = network.consortium.node_certs(node)
    signer = CertificateSigner.from_files(certs / f"{node}.crt", certs / f"{node}.key")
    ProtocolApprovals(network.consortium.node_state(node)).approve(spec_sha256, signer.sign)


def _spec_sha(network: Network, study_id: str) -> str:
    return spec_from_proto(network.admin.status(study_id).spec).sha256


def test_a_study_waits_for_every_approval_and_names_who_is_missing(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(rounds=1, eval_every=0, nodes=tuple(HOSPITALS), approvals="all")
    study_id = network.submit(spec)
    sha = _spec_sha(network, study_id)
    waiting = network.wait_until(study_id, lambda s: "protocol approval" in s.message)
    assert all(h in waiting.message for h in HOSPITALS) and sha[:12] in waiting.message

    for node in HOSPITALS[:3]:
        _approve(network, node, sha)
    last = HOSPITALS[3]
    status = network.wait_until(
        study_id, lambda s: "missing: " + last in s.message and HOSPITALS[0] not in s.message
    )
    assert status.completed_rounds == 0
    _approve(network, last, sha)
    done = network.wait_done(study_id, timeout_s=90)
    assert done.state == "completed", done.message

    lines = network.admin.ledger()
    verify_entries(
        [parse_line(line) for line in lines], load_ca(network.consortium.ca_dir / "ca.crt")
    )
    entries = [json.loads(line) for line in lines]
    approved = [e["payload"] for e in entries if e["kind"] == kinds.PROTOCOL_APPROVED]
    assert sorted(p["node"] for p in approved if p["spec_sha256"] == sha) == sorted(HOSPITALS)
    submitted = [
        e for e in entries if e["kind"] == kinds.STUDY_SUBMITTED and e["study"] == study_id
    ]
    assert submitted[0]["payload"]["spec_sha256"] == sha

    changed = network.submit(
        small_study(rounds=2, eval_every=0, nodes=tuple(HOSPITALS), approvals="all")
    )
    again = network.wait_until(changed, lambda s: "protocol approval" in s.message)
    assert _spec_sha(network, changed) != sha
    assert all(h in again.message for h in HOSPITALS)  # the old approvals do not carry over
    network.admin.cancel(changed, "test over")


def test_m_of_n_approvals_train_only_where_approved(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    study_id = network.submit(small_study(rounds=1, eval_every=0, approvals="2", min_nodes=2))
    sha = _spec_sha(network, study_id)
    network.wait_until(study_id, lambda s: "0 of the 2 hospitals" in s.message)
    _approve(network, HOSPITALS[0], sha)
    network.wait_until(study_id, lambda s: "1 of the 2 hospitals" in s.message)
    _approve(network, HOSPITALS[2], sha)
    done = network.wait_done(study_id, timeout_s=90)
    assert done.state == "completed", done.message
    entries = [json.loads(line) for line in network.admin.ledger(study_id)]
    rounds = [e["payload"] for e in entries if e["kind"] == kinds.ROUND_COMMITTED]
    assert sorted(u["node"] for u in rounds[0]["updates"]) == sorted([HOSPITALS[0], HOSPITALS[2]])
