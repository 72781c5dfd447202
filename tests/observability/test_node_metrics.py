from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from medfed.node.config import load_node_config
from medfed.node.policy import LocalPolicy
from medfed.node.service import build_agent
from medfed.privacy.ledger import PrivacyLedger
from tests.e2e.harness import HOSPITALS, Network, small_study
from tests.observability.test_coordinator_metrics import free_port, scrape


def test_each_node_counts_its_tasks_refusals_training_time_and_privacy(network: Network) -> None:
    LocalPolicy(network.consortium.node_state("switzerland")).revoke("logistic_regression", "1")
    for name in HOSPITALS:
        ledger = PrivacyLedger(Path(network.consortium.node_state(name)) / "privacy.sqlite")
        ledger.set_budget("heart_disease", 2.0, 1e-5, now=0.0)
    network.start_coordinator()
    ports = {}
    for name in HOSPITALS:
        ports[name] = free_port()
        config = load_node_config(network.consortium.node_configs[name])
        _, agent = build_agent(dataclasses.replace(config, metrics_port=ports[name]))
        thread = threading.Thread(target=agent.run, name=f"node-{name}", daemon=True)
        thread.start()
        network.agents[name] = (agent, thread)
    network.wait_online(HOSPITALS)

    spec = small_study(rounds=2, dp_epsilon=1.0, dp_delta=1e-5, dp_max_grad_norm=1.0)
    status = network.wait_done(network.submit(spec), timeout_s=120)
    refusing = scrape(ports["switzerland"])
    training = scrape(ports["cleveland"])

    assert status.state == "completed"
    refused = sum(f.node == "switzerland" for f in status.refusals)
    assert refusing["medfed_node_tasks_refused_total"][(("code", "plan_not_approved"),)] == refused
    assert "medfed_node_tasks_total" not in refusing or not refusing["medfed_node_tasks_total"]
    tasks = training["medfed_node_tasks_total"]
    assert tasks[(("kind", "train"), ("outcome", "accepted"))] == 2
    assert tasks[(("kind", "evaluate"), ("outcome", "accepted"))] == 2
    assert training["medfed_node_task_seconds_count"][(("kind", "train"),)] == 2
    assert training["medfed_node_task_seconds_sum"][(("kind", "train"),)] > 0
    spent = {m.node: dict(m.metrics) for m in status.rounds[-1].train_per_node}["cleveland"]
    study = (("study", status.study_id),)
    assert training["medfed_node_privacy_epsilon_spent"][study] == spent["epsilon"] > 0
    left = training["medfed_node_privacy_epsilon_budget_left"][study]
    assert left == spent["epsilon_budget_left"]
