from __future__ import annotations

import dataclasses
import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from medfed.coordinator.client import wait_for_ready
from medfed.coordinator.config import load_coordinator_config
from medfed.coordinator.service import Coordinator
from medfed.node.policy import LocalPolicy
from tests.e2e.harness import Network, small_study


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value, through prometheus_client's own text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def start_with_metrics(network: Network) -> int:
    config = load_coordinator_config(network.consortium.coordinator_config)
    port = free_port()
    network.coordinator = Coordinator(dataclasses.replace(config, metrics_port=port))
    network.coordinator.start()
    wait_for_ready(network.admin, timeout_s=10)
    network.start_nodes()
    return port


def test_metrics_match_the_study_rounds_and_rejections(network: Network) -> None:
    LocalPolicy(network.consortium.node_state("switzerland")).revoke("logistic_regression", "1")
    port = start_with_metrics(network)

    status = network.wait_done(network.submit(small_study(rounds=2)), timeout_s=90)
    metrics = scrape(port)

    assert status.state == "completed"
    study = (("study", status.study_id),)
    assert metrics["medfed_rounds_committed_total"][study] == status.completed_rounds == 2
    accepted = sum(r.accepted for r in status.rounds)
    assert metrics["medfed_replies_accepted_total"][study] == accepted
    rejected = {
        dict(labels)["reason"]: value
        for labels, value in metrics["medfed_replies_rejected_total"].items()
        if dict(labels)["study"] == status.study_id
    }
    assert sum(rejected.values()) == len(status.refusals) > 0
    assert rejected["plan_not_approved"] == sum(
        f.node == "switzerland" and f.code == "plan_not_approved" for f in status.refusals
    )
    uploaded = sum(r.metrics["upload_bytes"] for r in status.rounds)
    assert metrics["medfed_upload_bytes_total"][study] == uploaded > 0
    assert metrics["medfed_round_duration_seconds_count"][()] == 2
    assert metrics["medfed_round_duration_seconds_sum"][()] == sum(
        r.duration_s for r in status.rounds
    )
    assert metrics["medfed_nodes"][(("status", "online"),)] == 4
    assert metrics["medfed_studies"][(("state", "completed"),)] == 1
    assert metrics["medfed_model_bytes_sent_total"][()] > 0


def test_metrics_listen_on_loopback_only_and_are_off_by_default(network: Network) -> None:
    config = load_coordinator_config(network.consortium.coordinator_config)
    assert config.metrics_port == 0
    coordinator = network.start_coordinator()
    assert coordinator.metrics is None
    network.stop_coordinator()

    port = free_port()
    network.coordinator = Coordinator(dataclasses.replace(config, metrics_port=port))
    network.coordinator.start()
    assert network.coordinator.metrics is not None
    with socket.socket() as probe:
        probe.connect(("127.0.0.1", port))
        assert probe.getpeername()[0] == "127.0.0.1"
    server = network.coordinator.metrics._server
    assert server is not None and server.server_address[0] == "127.0.0.1"  # type: ignore[attr-defined]


def test_secure_rounds_record_their_stage_timings_and_dropouts(network: Network) -> None:
    port = start_with_metrics(network)
    spec = small_study(rounds=1, name="secure", secure_aggregation=True, min_nodes=4)

    status = network.wait_done(network.submit(spec), timeout_s=90)
    metrics = scrape(port)

    assert status.state == "completed"
    recorded = status.rounds[0].metrics
    stages = ("advertise", "share", "train_mask", "reveal", "unmask")
    assert all(recorded[f"secagg_{s}_s"] >= 0 for s in stages), dict(recorded)
    assert recorded["secagg_dropouts"] == 0
    counts = metrics["medfed_secagg_stage_duration_seconds_count"]
    assert {dict(k)["stage"]: v for k, v in counts.items()} == dict.fromkeys(stages, 1.0)
    assert metrics["medfed_secagg_dropouts_total"][(("study", status.study_id),)] == 0
