from __future__ import annotations

import dataclasses
import time

from medfed.node.policy import LocalPolicy
from tests.e2e.harness import Network, small_study


def _rejections(
    network: Network, study_id: str, count: int = 4, timeout_s: float = 10.0
) -> list[str]:
    assert network.coordinator is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = network.coordinator.state.rejections(study_id)
        if len(found) >= count:
            return [f"{node}: {reason}" for _, node, reason in found[:count]]
        time.sleep(0.1)
    return []


def test_unapproved_plan_is_refused_with_its_reason_and_the_round_goes_on(
    network: Network,
) -> None:
    LocalPolicy(network.consortium.node_state("switzerland")).revoke("logistic_regression", "1")
    network.start_coordinator()
    network.start_nodes()

    status = network.wait_done(network.submit(small_study(rounds=1)), timeout_s=60)

    assert status.state == "completed"
    first = status.rounds[0]
    assert first.accepted == 3
    assert any(
        r.startswith("switzerland: refused (plan_not_approved)") for r in first.rejections
    ), list(first.rejections)


def test_plan_code_hash_mismatch_is_refused_by_every_hospital(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = dataclasses.replace(small_study(rounds=1, min_nodes=1), plan_sha256="ab" * 32)

    study_id = network.submit(spec)
    rejections = _rejections(network, study_id)

    assert len(rejections) == 4
    assert all("refused (plan_hash_mismatch)" in r for r in rejections), rejections
    assert network.admin.status(study_id).completed_rounds == 0


def test_dataset_schema_mismatch_is_refused(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = dataclasses.replace(small_study(rounds=1, min_nodes=1), features=("age", "sex", "chol"))

    study_id = network.submit(spec)
    rejections = _rejections(network, study_id)

    assert len(rejections) == 4
    assert all("refused (schema_mismatch)" in r for r in rejections), rejections
    assert network.admin.status(study_id).completed_rounds == 0


def test_a_study_every_hospital_refuses_fails_with_the_reasons(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = dataclasses.replace(small_study(rounds=1, min_nodes=1), plan_sha256="ab" * 32)

    status = network.wait_done(network.submit(spec), timeout_s=60)

    assert status.state == "failed"
    assert "round 1 failed 10 times in a row" in status.message
    assert "plan_hash_mismatch" in status.message
