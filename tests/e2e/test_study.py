from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from medfed.data.heart_disease import heart_disease_centres
from medfed.demo.heart import baseline_config, heart_study
from medfed.training.baselines import evaluate_everywhere, pooled_accuracy, train_local
from medfed.training.registry import get_plan
from tests.e2e.harness import HOSPITALS, Network, small_study


def test_four_hospitals_beat_the_best_single_hospital(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(rounds=heart_study().rounds)
    study_id = network.submit(spec)

    status = network.wait_done(study_id, timeout_s=240)

    assert status.state == "completed", status.message
    assert status.completed_rounds == spec.rounds
    assert [r.round for r in status.rounds] == list(range(1, spec.rounds + 1))
    last = status.rounds[-1]
    assert last.accepted == len(HOSPITALS)
    assert {m.node for m in last.per_node} == set(HOSPITALS)
    assert last.metrics["participation"] == 1.0
    assert last.metrics["accuracy_min"] <= last.metrics["accuracy"] <= last.metrics["accuracy_max"]

    plan = get_plan(spec.plan, spec.plan_version)
    centres = heart_disease_centres()
    final = network.admin.download(status.model_sha256)
    federated = pooled_accuracy(evaluate_everywhere(plan, final, centres))
    assert np.isclose(federated, last.metrics["accuracy"], atol=1e-6)
    y_all = np.concatenate([data.y_test for data in centres.values()])
    scores = np.concatenate([plan.predict(final, data) for data in centres.values()])
    by_hand = roc_auc_score(y_all, scores)  # over all four hospitals' test patients at once
    assert abs(last.metrics["auc_pooled"] - by_hand) <= last.metrics["auc_pooled_bin_error"] + 1e-9
    assert last.metrics["auc_pooled_bin_error"] < 0.01
    assert last.metrics["pooled_sites"] == len(HOSPITALS)

    init = plan.init_weights(len(spec.features), spec.seed, spec.plan_options)
    config = baseline_config(spec)
    best_single = max(
        pooled_accuracy(evaluate_everywhere(plan, train_local(data, plan, config, init), centres))
        for data in centres.values()
    )
    assert federated > best_single


def test_fedprox_study_sends_mu_and_completes(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(rounds=2, strategy="fedprox", strategy_params={"mu": 0.1})

    status = network.wait_done(network.submit(spec), timeout_s=120)

    assert status.state == "completed"
    assert status.completed_rounds == 2
