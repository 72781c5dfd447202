from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.cli.audit_study import audit_spec
from medfed.coordinator import uploads
from medfed.coordinator.audit import AUDIT_METRICS
from medfed.coordinator.rounds import OpenRound, TaskSlot
from medfed.demo.consortium import add_admin
from medfed.errors import MedfedError
from medfed.ledger import kinds
from medfed.ledger.chain import verify_entries
from medfed.ledger.entry import parse_line
from medfed.ledger.keys import load_ca
from medfed.node import audit as node_audit
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.e2e.harness import HOSPITALS, Network, small_study

TRAINED = [h for h in HOSPITALS if h != "switzerland"]
FLAGGING = "cleveland"


@pytest.fixture
def audited(network: Network, monkeypatch: pytest.MonkeyPatch) -> tuple[Network, str, list]:
    """A 3-site heart study, completed, with every audit reply the coordinator receives kept."""
    return _completed_study(network, monkeypatch)


@pytest.fixture
def audited_with_council(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> tuple[Network, str, dict[str, Path]]:
    """The same, in a consortium whose council (researcher, ethics, dpo) passes at 2 votes."""
    admins = {"researcher": network.consortium.admin_config}
    for name in ("ethics", "dpo"):
        admins[name] = add_admin(network.consortium, name)
    path = network.consortium.coordinator_config
    path.write_text('council = "researcher,ethics,dpo"\ncouncil_threshold = 2\n' + path.read_text())
    network_, study, _ = _completed_study(network, monkeypatch)
    return network_, study, admins


def _completed_study(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> tuple[Network, str, list]:
    received: list[tuple[pb.UpdateHeader, int]] = []
    honest = uploads.receive_audit

    def recording(
        round_: OpenRound, slot: TaskSlot, header: pb.UpdateHeader, frames: Iterator[bytes]
    ) -> None:
        rest = list(frames)  # whatever followed the header on the wire
        received.append((header, sum(len(f) for f in rest)))
        honest(round_, slot, header, iter(rest))

    monkeypatch.setattr(uploads, "receive_audit", recording)
    flagging = network.consortium.node_configs[FLAGGING]  # its steward set a threshold
    flagging.write_text("audit_auc_threshold = 0.01\n" + flagging.read_text())
    network.start_coordinator()
    network.start_nodes()
    study = network.submit(small_study(rounds=3, nodes=tuple(TRAINED), min_nodes=3))
    done = network.wait_done(study, timeout_s=120)
    assert done.state == "completed", done.message
    return network, study, received


def test_cli_audit_of_a_heart_study_prints_per_site_auc(audited: tuple) -> None:
    network, study, received = audited
    config = str(network.consortium.admin_config)

    printed = CliRunner().invoke(root, ["study", "audit", study, "--config", config])
    as_json = CliRunner().invoke(root, ["study", "audit", study, "--config", config, "--json"])

    assert printed.exit_code == 0, printed.output
    for site in TRAINED:
        assert site in printed.output
    assert "loss AUC" in printed.output
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc["audited_study"] == study and doc["state"] == "completed"
    assert sorted(r["site"] for r in doc["sites"]) == sorted(TRAINED)
    for row in doc["sites"]:
        assert 0.0 <= row["loss_auc"] <= 1.0 and 0.0 <= row["lira_auc"] <= 1.0
        assert row["members"] >= 1 and row["non_members"] >= 1
        assert row["block_release"] == float(row["site"] == FLAGGING)
    # the coordinator received headers with aggregate numbers only: no array, no row score
    assert len(received) == 2 * len(TRAINED)
    for header, trailing_bytes in received:
        assert trailing_bytes == 0
        assert set(header.metrics) <= AUDIT_METRICS
        assert not header.HasField("score_histogram") and not header.encrypted_metrics
        assert header.ByteSize() < 1024
        assert header.num_examples == header.metrics["members"] + header.metrics["non_members"]


def test_a_site_that_did_not_train_refuses_with_the_reason(audited: tuple) -> None:
    network, study, _ = audited
    target = network.admin.status(study)
    spec = audit_spec(target, tuple(HOSPITALS), 60.0)

    audit_id = network.admin.submit(spec, network.admin.download(target.model_sha256))
    status = network.wait_done(audit_id, timeout_s=90)

    assert status.state == "completed", status.message
    answered = sorted(m.node for m in status.rounds[0].per_node)
    assert answered == sorted(TRAINED)
    refusals = [r for r in status.refusals if r.node == "switzerland"]
    assert len(refusals) == 1 and refusals[0].code == "not_a_participant"
    assert "did not train in study" in refusals[0].reason


def test_a_reply_with_per_row_scores_is_rejected(
    audited: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, study, _ = audited
    honest = node_audit.AuditResponder.answer

    def leaky(
        self: node_audit.AuditResponder, task: pb.Task, *args: object
    ) -> tuple[int, dict[str, float]]:
        rows, metrics = honest(self, task, *args)  # type: ignore[arg-type]
        return rows, metrics | {f"row_{i}_loss": 0.5 for i in range(3)}

    monkeypatch.setattr(node_audit.AuditResponder, "answer", leaky)
    target = network.admin.status(study)
    spec = audit_spec(target, (), 60.0)

    audit_id = network.admin.submit(spec, network.admin.download(target.model_sha256))
    status = network.wait_done(audit_id, timeout_s=90)

    assert status.state == "failed"
    assert "aggregate numbers only" in status.message
    assert not status.rounds


def test_only_a_completed_study_is_audited(audited: tuple) -> None:
    network, _, _ = audited
    waiting = network.submit(small_study(rounds=1, nodes=("no-such-hospital",), min_nodes=1))
    config = str(network.consortium.admin_config)

    done = CliRunner().invoke(root, ["study", "audit", waiting, "--config", config])

    assert done.exit_code != 0
    assert "only a completed study's model can be audited" in " ".join(done.output.split())
    network.admin.cancel(waiting)


def test_a_site_over_its_threshold_flags_release(audited: tuple) -> None:
    network, study, _ = audited
    config = str(network.consortium.admin_config)

    done = CliRunner().invoke(root, ["study", "audit", study, "--config", config])
    as_json = CliRunner().invoke(root, ["study", "audit", study, "--config", config, "--json"])

    assert done.exit_code == 0, done.output
    assert "BLOCK (>0.01)" in done.output
    doc = json.loads(as_json.stdout)
    flags = {r["site"]: (r["block_release"], r["auc_threshold"]) for r in doc["sites"]}
    assert flags == {"cleveland": (1.0, 0.01), "hungary": (0.0, 0.0), "va_long_beach": (0.0, 0.0)}
    status = network.admin.status(doc["audit_id"])
    assert status.rounds[0].metrics["sites_flagging_release"] == 1.0
    assert "1 site(s) flag release" in status.message


def _invoke(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(root, list(args))
    return done.exit_code, " ".join(done.output.split())


def _download(network: Network, study: str, out: Path) -> tuple[int, str]:
    config = str(network.consortium.admin_config)
    return _invoke("study", "download", study, "--config", config, "--out", str(out))


def test_a_blocked_model_is_not_downloaded_until_the_council_overrules_the_block(
    audited_with_council: tuple, tmp_path: Path
) -> None:
    network, study, admins = audited_with_council
    config = str(admins["researcher"])
    code, said = _invoke("study", "audit", study, "--config", config, "--json")
    assert code == 0, said
    auc = max(v for k, v in _site(said, FLAGGING).items() if k.endswith("_auc"))

    code, refused = _download(network, study, tmp_path / "blocked.safetensors")
    state = json.loads(network.admin.govern().state_json)
    [proposal] = [p for p in state["proposals"] if p["kind"] == "block_release"]

    assert code != 0 and not (tmp_path / "blocked.safetensors").exists()
    assert f"release of study {study}'s model is blocked" in refused
    assert FLAGGING in refused and f"AUC of {auc:.3f}" in refused
    assert f"proposal {proposal['id']}" in refused
    assert (proposal["proposer"], proposal["study_id"], proposal["outcome"]) == (
        FLAGGING, study, "open")  # fmt: skip
    number = str(proposal["id"])
    code, said = _invoke("governance", "vote", number, "no", "--config", str(admins["ethics"]))
    assert code == 0 and "is open" in said, said
    with pytest.raises(MedfedError, match="blocked"):  # one "no" of the two needed: still held
        network.admin.download(network.admin.status(study).model_sha256)

    code, said = _invoke("governance", "vote", number, "no", "--config", str(admins["dpo"]))
    assert code == 0 and "rejected" in said, said
    code, done = _download(network, study, tmp_path / "released.safetensors")

    assert code == 0, done
    assert (tmp_path / "released.safetensors").stat().st_size > 0
    entries = [parse_line(x) for x in network.admin.ledger()]
    requested = [e for e in entries if e.kind == kinds.RELEASE_BLOCK_REQUESTED]
    assert [(e.study, e.payload["site"], e.payload["proposal"]) for e in requested] == [
        (study, FLAGGING, proposal["id"])]  # fmt: skip
    code, said = _invoke("study", "report", study, "--config", config, "--out", str(tmp_path))
    assert code == 0, said
    report = json.loads((tmp_path / "report.json").read_text())["privacy_audit"]
    assert sorted(r["site"] for r in report["audits"][0]["sites"]) == sorted(TRAINED)
    assert [(b["site"], b["status"]) for b in report["release"]["blocks"]] == [
        (FLAGGING, "overruled")]  # fmt: skip
    assert "the council overruled the block" in (tmp_path / "report.html").read_text()
    verifier = verify_entries(entries, load_ca(network.consortium.ca_dir / "ca.crt"))
    assert verifier.governance.history.proposals[proposal["id"]].votes == {
        "ethics": False, "dpo": False}  # fmt: skip


def test_without_a_council_the_block_holds_until_the_hospital_withdraws_it(
    audited: tuple, tmp_path: Path
) -> None:
    network, study, _ = audited
    config = str(network.consortium.admin_config)
    assert _invoke("study", "audit", study, "--config", config)[0] == 0

    code, refused = _download(network, study, tmp_path / "blocked.safetensors")

    assert code != 0 and FLAGGING in refused and "until cleveland withdraws it" in refused
    # the steward clears the threshold; the hospital's next audit no longer asks
    network.stop_node(FLAGGING)
    node_config = network.consortium.node_configs[FLAGGING]
    node_config.write_text(node_config.read_text().replace("audit_auc_threshold = 0.01\n", ""))
    network.start_node(FLAGGING)
    network.wait_online([FLAGGING])
    code, said = _invoke("study", "audit", study, "--config", config, "--json")
    assert code == 0, said
    assert _site(said, FLAGGING)["block_release"] == 0.0

    code, done = _download(network, study, tmp_path / "released.safetensors")

    assert code == 0, done
    kinds_seen = [parse_line(x).kind for x in network.admin.ledger(study)]
    assert kinds.RELEASE_BLOCK_REQUESTED in kinds_seen
    assert kinds.RELEASE_BLOCK_WITHDRAWN in kinds_seen


def _site(printed: str, site: str) -> dict[str, float]:
    doc = json.loads(printed[printed.index("{") :])
    return next(r for r in doc["sites"] if r["site"] == site)


def test_a_study_that_asks_for_it_is_audited_by_the_coordinator_when_it_completes(
    network: Network,
) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(rounds=2, nodes=tuple(TRAINED), min_nodes=3, audit_on_complete=True)
    study = network.submit(spec)
    assert network.wait_done(study, timeout_s=120).state == "completed"

    deadline = time.monotonic() + 30
    found: list[str] = []
    while not found and time.monotonic() < deadline:  # submitted right after "completed"
        found = [s.study_id for s in network.admin.studies() if s.spec.audit_of == study]
        time.sleep(0.1)
    assert len(found) == 1, "no audit was submitted"
    audit_id = found[0]
    status = network.wait_done(audit_id, timeout_s=120)
    assert status.state == "completed", status.message
    assert status.spec.audit_of == study and not status.spec.audit_on_complete
    assert sorted(m.node for m in status.rounds[0].per_node) == sorted(TRAINED)
    submitted = [json.loads(line) for line in network.admin.ledger(audit_id)]
    assert submitted[0]["kind"] == kinds.STUDY_SUBMITTED
    assert submitted[0]["payload"]["submitted_by"] == "coordinator"
