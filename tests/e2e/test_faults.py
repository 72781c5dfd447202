from __future__ import annotations

import time

import numpy as np

from medfed.coordinator.client import wait_for_ready
from medfed.demo.processes import kill9, spawn, stop
from medfed.ledger.chain import verify_entries
from medfed.ledger.entry import parse_line
from medfed.ledger.keys import load_ca
from tests.e2e.harness import HOSPITALS, Network, passthrough_study, small_study


def _spawn_coordinator(network: Network, tag: str):  # type: ignore[no-untyped-def]
    config = network.consortium.coordinator_config
    log = network.consortium.root / "logs" / f"coordinator-{tag}.log"
    process = spawn(["coordinator", "start", "--config", str(config)], log)
    wait_for_ready(network.admin, timeout_s=30)
    return process


def test_coordinator_sigkill_mid_study_resumes_bit_identical(network: Network) -> None:
    first = _spawn_coordinator(network, "first")
    try:
        network.start_nodes()
        spec = small_study(rounds=6, round_deadline_s=20.0)
        study_id = network.submit(spec)
        before = network.wait_rounds(study_id, 2, timeout_s=90)
        committed = {r.round: r.model_sha256 for r in before.rounds}
        weights_before = {
            n: {k: np.array(v) for k, v in network.admin.download(sha).items()}
            for n, sha in committed.items()
        }
        kill9(first)
    finally:
        stop(first)

    second = _spawn_coordinator(network, "second")
    try:
        after_restart = network.admin.status(study_id)
        assert after_restart.completed_rounds >= max(committed)
        for n, sha in committed.items():
            assert after_restart.rounds[n - 1].model_sha256 == sha
            restored = network.admin.download(sha)
            for name, array in weights_before[n].items():
                assert restored[name].tobytes() == array.tobytes()

        final = network.wait_done(study_id, timeout_s=180)
        ledger = [parse_line(line) for line in network.admin.ledger()]
    finally:
        stop(second)
    # killed at any instant, the ledger still verifies and records each committed round once
    verify_entries(ledger, load_ca(network.consortium.ca_dir / "ca.crt"))
    recorded = [e.payload for e in ledger if e.kind == "round.committed" and e.study == study_id]
    assert [(p["round"], p["model_sha256"]) for p in recorded] == [
        (r.round, r.model_sha256) for r in final.rounds
    ]
    assert final.state == "completed", final.message
    assert [r.round for r in final.rounds] == list(range(1, spec.rounds + 1))
    assert final.completed_rounds == spec.rounds
    for n, sha in committed.items():
        assert final.rounds[n - 1].model_sha256 == sha


def test_node_killed_mid_round_round_closes_at_deadline_and_node_rejoins(
    network: Network,
) -> None:
    network.start_coordinator()
    honest = [h for h in HOSPITALS if h != "va_long_beach"]
    network.start_nodes(honest)
    victim = spawn(
        ["node", "start", "--config", str(network.consortium.node_configs["va_long_beach"])],
        network.consortium.root / "logs" / "va.log",
    )
    try:
        network.wait_online(HOSPITALS, timeout_s=60)
        spec = passthrough_study(rounds=30, min_nodes=3, round_deadline_s=2.0)
        study_id = network.submit(spec)
        network.wait_rounds(study_id, 1, timeout_s=30)
        kill9(victim)
        closed_without = _wait_for(
            network,
            study_id,
            lambda r: (
                r.accepted == 3
                and any(
                    "va_long_beach: no reply before the round deadline" in x for x in r.rejections
                )
            ),
        )
        assert closed_without.duration_s >= 1.9
        network.start_node("va_long_beach")
        rejoined = _wait_for(
            network, study_id, lambda r: r.round > closed_without.round and r.accepted == 4
        )
        assert rejoined.round > closed_without.round
    finally:
        stop(victim)
    final = network.wait_done(study_id, timeout_s=120)
    assert final.completed_rounds == spec.rounds


def _wait_for(network: Network, study_id: str, predicate, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for r in network.admin.status(study_id).rounds:
            if predicate(r):
                return r
        time.sleep(0.1)
    raise TimeoutError("no round matched")
