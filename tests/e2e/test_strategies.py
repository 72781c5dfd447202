"""Strategies chosen in a study spec, run by four hospitals over real mTLS, and the in-process
simulator (medfed.simulation) checked against the network: same spec, same data, same numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medfed.cli.study import prepare
from medfed.coordinator.spec import StudySpec
from medfed.data.heart_disease import heart_disease_centres
from medfed.node.policy import LocalPolicy
from medfed.simulation.runner import simulate
from tests.e2e.harness import HOSPITALS, Network, small_study

ROUNDS = 3
STUDIES: dict[str, dict[str, object]] = {
    "scaffold": {"strategy": "scaffold", "learning_rate": 0.05},
    "fedadam": {
        "strategy": "fedadam",
        "strategy_params": {"server_learning_rate": 0.05, "beta2": 0.999, "tau": 1e-8},
    },
    "fednova": {"strategy": "fednova"},
    "qfedavg": {"strategy": "qfedavg", "strategy_params": {"q": 1.0}},
    "cyclic": {"strategy": "cyclic", "min_nodes": 1},
    "krum": {"strategy": "krum", "strategy_params": {"f": 0.0, "m": 2.0}},
    "normbound": {"strategy": "normbound", "strategy_params": {"max_norm": 0.2}},
    "q8": {"compression": "q8"},
    "topk": {"compression": "topk", "topk_ratio": 0.3},
}


def _spec(key: str) -> StudySpec:
    return small_study(rounds=ROUNDS, name=f"strategy-{key}", **STUDIES[key])


def _final(network: Network, study_id: str) -> dict[str, np.ndarray]:
    status = network.wait_done(study_id, timeout_s=180)
    assert status.state == "completed", status.message
    assert [r.round for r in status.rounds] == list(range(1, ROUNDS + 1))
    return network.admin.download(status.model_sha256)


def test_every_strategy_runs_over_mtls_and_matches_the_simulator(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    submitted = {}
    for key in STUDIES:
        pinned, init = prepare(_spec(key))
        submitted[key] = (network.admin.submit(pinned, init), pinned, init)
    centres = heart_disease_centres()
    for key, (study_id, pinned, init) in submitted.items():
        networked = _final(network, study_id)
        simulated = simulate(pinned, centres, init).model
        assert list(networked) == list(simulated)
        for name in networked:
            # Replies are summed in arrival order on the network, in name order in the simulator.
            np.testing.assert_allclose(networked[name], simulated[name], atol=1e-5, err_msg=key)

    status = {k: network.admin.status(v[0]) for k, v in submitted.items()}
    # One hospital per round; which one is checked by the equality with the simulator above.
    assert all(r.selected == r.accepted == 1 for r in status["cyclic"].rounds)
    assert all(r.accepted == len(HOSPITALS) for r in status["scaffold"].rounds)
    dense = status["fednova"].rounds[-1].metrics["upload_bytes"]
    assert status["q8"].rounds[-1].metrics["upload_bytes"] < dense
    assert status["topk"].rounds[-1].metrics["upload_bytes"] < dense


def _assert_matches_simulation(
    network: Network, study_id: str, pinned: StudySpec, init: dict[str, np.ndarray]
) -> None:
    status = network.wait_done(study_id, timeout_s=120)
    assert status.state == "completed", status.message
    final = network.admin.download(status.model_sha256)
    expected = simulate(pinned, heart_disease_centres(), init).model
    for name in final:
        np.testing.assert_allclose(final[name], expected[name], atol=1e-5)


def test_server_state_survives_a_coordinator_restart(network: Network) -> None:
    """FedAdam's moments and SCAFFOLD's control variates are committed with each round: a
    restarted coordinator continues the same trajectory (compared with an uninterrupted run)."""
    network.start_coordinator()
    network.start_nodes()
    # min_nodes = 4: the restarted coordinator waits for every hospital to dial back in rather
    # than running the next round with whichever three reconnect first.
    spec = dataclasses.replace(_spec("fedadam"), rounds=4, min_nodes=4)
    pinned, init = prepare(spec)
    study_id = network.admin.submit(pinned, init)
    network.wait_rounds(study_id, 2)
    network.stop_coordinator()
    network.start_coordinator()
    _assert_matches_simulation(network, study_id, pinned, init)


def test_scaffold_site_state_survives_a_node_restart(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes()
    # min_nodes = 4: the round the node misses is retried after its (short) deadline, and the
    # retry must start from the site state of the round before, not advance it twice.
    spec = dataclasses.replace(_spec("scaffold"), rounds=4, min_nodes=4, round_deadline_s=8.0)
    pinned, init = prepare(spec)
    study_id = network.admin.submit(pinned, init)
    network.wait_rounds(study_id, 2)
    network.stop_node(HOSPITALS[0])
    network.start_node(HOSPITALS[0])
    _assert_matches_simulation(network, study_id, pinned, init)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy": "scaffold", "optimizer": "adam"}, "plain local SGD"),
        ({"strategy": "krum", "strategy_params": {"m": 1.0}}, r"missing \['f'\]"),
        ({"strategy": "fedadam"}, "server_learning_rate"),
    ],
)
def test_a_spec_the_strategy_cannot_run_is_refused_at_submission(
    network: Network, changes: dict[str, object], message: str
) -> None:
    network.start_coordinator()
    pinned, init = prepare(small_study(rounds=1, **changes))
    with pytest.raises(Exception, match=message):
        network.admin.submit(pinned, init)


def test_fedbn_keeps_each_hospitals_batchnorm_and_reports_personal_metrics(
    network: Network,
) -> None:
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(
        rounds=2,
        name="fedbn",
        plan="mlp",
        plan_version="1",
        plan_options={"hidden": 8.0, "batch_norm": 1.0},
        personalization="fedbn",
        finetune_steps=5,
    )
    for node in HOSPITALS:
        LocalPolicy(network.consortium.node_state(node)).approve("mlp", "1")
    pinned, init = prepare(spec)
    status = network.wait_done(network.admin.submit(pinned, init), timeout_s=120)
    assert status.state == "completed", status.message
    last = status.rounds[-1]
    assert {m.node for m in last.per_node} == set(HOSPITALS)
    for m in last.per_node:
        assert 0.0 <= m.metrics["personal_accuracy"] <= 1.0
        assert "accuracy" in m.metrics
    sim = simulate(pinned, heart_disease_centres(), init)
    for name, array in network.admin.download(status.model_sha256).items():
        np.testing.assert_allclose(array, sim.model[name], atol=1e-5)
    evaluated = sim.evaluate()
    for m in last.per_node:
        assert m.metrics["personal_accuracy"] == pytest.approx(
            evaluated[m.node].metrics["personal_accuracy"], abs=1e-9
        )


def test_flamby_protocol_seed_42_gives_the_same_numbers_networked_and_simulated(
    network: Network,
) -> None:
    """bench/flamby_heart.py runs in the simulator; this is its FedAvg row, seed 42, over the
    network: 15 rounds x 100 local SGD steps, batch 4, lr 0.001 (FLamby's settings)."""
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(
        rounds=15,
        name="flamby-fedavg",
        local_epochs=0,
        local_steps=100,
        batch_size=4,
        learning_rate=0.001,
        seed=42,
        eval_every=0,
    )
    pinned, init = prepare(spec)
    study_id = network.admin.submit(pinned, init)
    status = network.wait_done(study_id, timeout_s=180)
    assert status.state == "completed", status.message
    sim = simulate(pinned, heart_disease_centres(), init)
    final = network.admin.download(status.model_sha256)
    for name in final:
        np.testing.assert_allclose(final[name], sim.model[name], atol=1e-6)
    networked = {m.node: m.metrics["accuracy"] for m in status.rounds[-1].per_node}
    simulated = {site: r.metrics["accuracy"] for site, r in sim.evaluate().items()}
    assert networked == simulated
