"""A study says, hospital by hospital, why it is not progressing, and the researcher can stop it."""

from __future__ import annotations

import threading
import time

import pytest

from medfed.data.registry import DatasetRegistry
from medfed.errors import TransportError
from medfed.node.policy import LocalPolicy
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.e2e.harness import HOSPITALS, Network, passthrough_study, small_study


def _site(status: pb.StudyStatus, node: str) -> pb.SiteState:
    return next(s for s in status.sites if s.node == node)


def _watch(network: Network, study_id: str, seen: list[pb.StudyStatus]) -> threading.Thread:
    def follow() -> None:
        seen.extend(network.admin.watch(study_id, timeout_s=60))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


def test_a_waiting_study_names_the_hospital_without_the_dataset_and_can_be_cancelled(
    network: Network,
) -> None:
    DatasetRegistry(network.consortium.node_state("hungary")).remove("heart_disease")
    network.start_coordinator()
    network.start_nodes(["cleveland", "hungary", "switzerland"])
    study_id = network.submit(small_study(rounds=5, min_nodes=4))
    watched: list[pb.StudyStatus] = []
    watcher = _watch(network, study_id, watched)

    first = network.wait_until(study_id, lambda s: s.state == "waiting", timeout_s=10)
    network.start_nodes(["va_long_beach"])
    later = network.wait_until(study_id, lambda s: "(4 online)" in s.message, timeout_s=10)
    cancelled = network.admin.cancel(study_id, reason="wrong cohort")
    watcher.join(timeout=10)

    assert first.message == (
        "waiting: 2 of at least 4 hospitals can take part (3 online); missing: hungary "
        "(dataset 'heart_disease' not registered (it announces none))"
    )
    assert later.message.startswith("waiting: 3 of at least 4 hospitals can take part")
    assert _site(later, "hungary").status == "dataset_not_registered"
    assert {s.node: s.status for s in later.sites} == {
        "cleveland": "ready",
        "hungary": "dataset_not_registered",
        "switzerland": "ready",
        "va_long_beach": "ready",
    }
    assert (cancelled.state, cancelled.message) == (
        "cancelled",
        "cancelled by researcher: wrong cohort",
    )
    assert network.coordinator is not None
    assert not network.coordinator.engine.is_running(study_id)
    assert all(agent.completed_tasks == 0 for agent, _ in network.agents.values())
    assert not watcher.is_alive()
    assert [s.state for s in watched][-1] == "cancelled"
    assert any("(4 online)" in s.message for s in watched)  # the watcher saw the change


def test_cancelling_a_running_study_commits_nothing_more_and_withdraws_its_tasks(
    network: Network,
) -> None:
    network.start_coordinator()
    network.start_nodes()
    study_id = network.submit(passthrough_study(rounds=10_000, dim=100))
    network.wait_rounds(study_id, 1, timeout_s=20)

    cancelled = network.admin.cancel(study_id)
    time.sleep(1.0)
    after = network.admin.status(study_id)

    assert (cancelled.state, cancelled.message) == ("cancelled", "cancelled by researcher")
    assert (after.state, after.completed_rounds) == ("cancelled", cancelled.completed_rounds)
    assert network.coordinator is not None
    assert not network.coordinator.engine.is_running(study_id)
    assert all(network.coordinator.board.pull(n, 0.0, lambda: False) is None for n in HOSPITALS)
    with pytest.raises(TransportError, match="already cancelled"):
        network.admin.cancel(study_id)


def test_refusal_reasons_reach_the_researcher_with_their_codes(network: Network) -> None:
    LocalPolicy(network.consortium.node_state("switzerland")).revoke("logistic_regression", "1")
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(rounds=1, min_nodes=1, dp_epsilon=1.0, dp_delta=1e-5, dp_max_grad_norm=1.0)

    status = network.wait_until(
        network.submit(spec),
        lambda s: {r.node for r in s.refusals} == set(HOSPITALS),
        timeout_s=20,
    )

    codes = {r.node: r.code for r in status.refusals}
    assert codes == {
        "cleveland": "privacy_budget_missing",
        "hungary": "privacy_budget_missing",
        "switzerland": "plan_not_approved",
        "va_long_beach": "privacy_budget_missing",
    }
    assert _site(status, "switzerland").status == "plan_not_approved"
    assert "is not approved by this hospital" in _site(status, "switzerland").reason
    assert _site(status, "va_long_beach").status == "budget_missing"
    assert "has no privacy budget" in _site(status, "va_long_beach").reason
