from __future__ import annotations

import json

from rich.console import Console
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.cli.progress import WatchLines, round_sites_table, status_json
from medfed.pki.ca import CertificateAuthority
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.e2e.harness import Network, small_study

runner = CliRunner()
NO_BUDGET = "refused (privacy_budget_missing): dataset 'heart' has no budget [x]"


def _invoke(*args: str) -> str:
    result = runner.invoke(root, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _text(renderable: object) -> str:
    console = Console(record=True, width=240)
    console.print(renderable)
    return console.export_text()


def _status() -> pb.StudyStatus:
    return pb.StudyStatus(
        study_id="s-1",
        state="running",
        rounds=[
            pb.RoundSummary(
                round=1,
                train_per_node=[pb.NodeMetrics(node="a", num_examples=120)],
                per_node=[pb.NodeMetrics(node="a", num_examples=30, metrics={"accuracy": 0.8})],
            )
        ],
        refusals=[
            pb.Refusal(round=1, node="b", code="privacy_budget_missing", reason=NO_BUDGET),
            pb.Refusal(round=2, node="a", reason="tensor 'w' holds NaN"),
        ],
    )


def test_the_per_site_table_shows_each_round_trained_evaluated_or_refused_with_reason() -> None:
    text = _text(round_sites_table(_status()))

    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert "accepted" in lines[0] and "120" in lines[0] and "0.800" in lines[0]
    assert "refused (privacy_budget_missing)" in lines[1]
    assert "dataset 'heart' has no budget [x]" in text  # in full, markup left alone
    assert "rejected" in lines[-1] and "tensor 'w' holds NaN" in lines[-1]


def test_watch_prints_a_line_only_when_the_state_or_a_site_changes() -> None:
    lines = WatchLines()
    status = pb.StudyStatus(state="waiting", message="waiting: 1 of at least 2")
    status.sites.add(node="a", status="ready", reason="online")
    status.sites.add(node="b", status="dataset_not_registered", reason="dataset 'x' not registered")

    first = lines.update(status)
    again = lines.update(status)
    status.sites[1].status = "ready"
    changed = lines.update(status)

    assert first == [
        "waiting: waiting: 1 of at least 2",
        "  a: ready (online)",
        "  b: dataset not registered (dataset 'x' not registered)",
    ]
    assert again == []
    assert changed == ["  b: ready (dataset 'x' not registered)"]


def test_status_json_has_every_key_even_when_empty() -> None:
    doc = json.loads(status_json(pb.StudyStatus(study_id="s-1")))

    assert doc["study_id"] == "s-1"
    assert doc["sites"] == [] and doc["refusals"] == [] and doc["completed_rounds"] == 0


def test_researcher_sees_a_revoked_hospital_and_cancels_a_waiting_study(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes(["cleveland", "hungary"])
    admin = str(network.consortium.admin_config)
    CertificateAuthority.load(network.consortium.ca_dir).revoke("hungary")
    study_id = network.submit(small_study(min_nodes=2))
    network.wait_until(
        study_id, lambda s: any(x.status == "revoked" for x in s.sites), timeout_s=10
    )

    nodes = _invoke("study", "nodes", "--config", admin)
    sites = _invoke("study", "status", study_id, "--sites", "--config", admin)
    doc = json.loads(_invoke("study", "status", study_id, "--json", "--config", admin))
    cancelled = _invoke("study", "cancel", study_id, "--reason", "hungary left", "--config", admin)
    final = json.loads(_invoke("study", "status", study_id, "--json", "--config", admin))

    assert any("hungary" in line and "revoked" in line for line in nodes.splitlines())
    assert any("cleveland" in line and "yes" in line for line in nodes.splitlines())
    assert "certificate was revoked by the consortium CA" in sites
    assert {s["node"]: s["status"] for s in doc["sites"]} == {
        "cleveland": "ready",
        "hungary": "revoked",
    }
    assert doc["state"] == "waiting" and "missing: hungary" in doc["message"]
    assert f"{study_id} cancelled: cancelled by researcher: hungary left" in cancelled
    assert final["state"] == "cancelled"
