"""Record-level DP over mTLS: each hospital derives its noise, books every step in its own ledger,
and refuses a round its data steward's budget cannot pay for, also after a restart."""

from __future__ import annotations

import itertools
from pathlib import Path

from medfed.cli.study import prepare
from medfed.cli.tables import privacy_table
from medfed.privacy.ledger import PrivacyLedger
from tests.e2e.harness import HOSPITALS, Network, small_study


def _ledger(network: Network, node: str) -> PrivacyLedger:
    return PrivacyLedger(Path(network.consortium.node_state(node)) / "privacy.sqlite")


def _dp_study(name: str, epsilon: float, rounds: int = 3):
    return small_study(
        rounds=rounds, name=name, dp_epsilon=epsilon, dp_delta=1e-5, dp_max_grad_norm=1.0
    )


def test_heart_study_with_record_level_dp_at_epsilon_1(network: Network) -> None:
    for node in HOSPITALS:
        _ledger(network, node).set_budget("heart_disease", 2.0, 1e-5, now=0.0)
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(_dp_study("dp-1", 1.0))
    status = network.wait_done(network.admin.submit(pinned, init), timeout_s=180)
    assert status.state == "completed", status.message
    final = {m.node: dict(m.metrics) for m in status.rounds[-1].train_per_node}
    assert set(final) == set(HOSPITALS)
    for node, metrics in final.items():
        assert 0.9 < metrics["epsilon"] <= 1.0, node  # all planned steps spent, never over
        assert metrics["epsilon_budget_left"] == 2.0 - metrics["epsilon"]
        booked = _ledger(network, node).study("heart_disease", status.study_id)
        assert booked is not None and booked.epsilon == metrics["epsilon"]
    epsilons = [[m.metrics["epsilon"] for m in r.train_per_node] for r in status.rounds]
    assert all(max(a) < min(b) for a, b in itertools.pairwise(epsilons))
    assert privacy_table(status) is not None
    assert status.rounds[-1].metrics["epsilon_max"] == max(m["epsilon"] for m in final.values())


def test_a_spent_budget_refuses_the_next_study_even_after_a_restart(network: Network) -> None:
    for node in HOSPITALS:
        _ledger(network, node).set_budget("heart_disease", 1.0, 1e-5, now=0.0)
    network.start_coordinator()
    network.start_nodes()
    first = network.wait_done(network.admin.submit(*prepare(_dp_study("dp-a", 0.7, 2))), 180)
    assert first.state == "completed", first.message

    second = network.wait_done(network.admin.submit(*prepare(_dp_study("dp-b", 0.7, 2))), 180)
    assert second.state == "failed"
    assert "privacy_budget_exhausted" in second.message or "budget" in second.message

    for node in HOSPITALS:
        network.stop_node(node)
    network.start_nodes()
    third = network.wait_done(network.admin.submit(*prepare(_dp_study("dp-c", 0.5, 2))), 180)
    assert third.state == "failed"
    assert "budget" in third.message
    for node in HOSPITALS:
        ledger = _ledger(network, node)
        assert ledger.spent("heart_disease") <= 1.0
        assert [s.study_id for s in ledger.studies("heart_disease")] == [first.study_id]
