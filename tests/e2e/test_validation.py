from __future__ import annotations

import numpy as np

from medfed.protocol.v1 import medfed_pb2 as pb
from tests.e2e.harness import Network, passthrough_study
from tests.e2e.hostile import HOSTILE, Hostile


def _one_round(network: Network) -> str:
    return network.submit(passthrough_study(rounds=1, min_nodes=3, round_deadline_s=15.0))


def _assert_round_committed_without_hostile(
    network: Network, hostile: Hostile, study_id: str, reason: str
) -> None:
    hostile.refuse_evaluation()
    status = network.wait_done(study_id, timeout_s=60)
    assert status.state == "completed"
    first = status.rounds[0]
    assert first.accepted == 3
    assert any(r.startswith(f"{HOSTILE}:") and reason in r for r in first.rejections), list(
        first.rejections
    )
    final = network.admin.download(status.model_sha256)
    assert np.allclose(final["w"], 0.001)


def test_nan_update_is_rejected_alone(network: Network, hostile: Hostile) -> None:
    study_id = _one_round(network)
    task = hostile.task()
    weights = hostile.model(task)
    weights["w"][7] = np.nan

    reply = hostile.client.submit(task, 10, {}, weights)

    assert not reply.accepted
    assert "NaN" in reply.reason
    _assert_round_committed_without_hostile(network, hostile, study_id, "NaN")


def test_wrong_shape_is_rejected_alone(network: Network, hostile: Hostile) -> None:
    study_id = _one_round(network)
    task = hostile.task()
    weights = {"w": np.zeros(999, dtype=np.float32)}

    reply = hostile.client.submit(task, 10, {}, weights)

    assert not reply.accepted
    assert "expected float32[1000]" in reply.reason
    _assert_round_committed_without_hostile(network, hostile, study_id, "float32[1000]")


def test_wrong_dtype_is_rejected_alone(network: Network, hostile: Hostile) -> None:
    study_id = _one_round(network)
    task = hostile.task()

    reply = hostile.client.submit(task, 10, {}, {"w": np.zeros(1000, dtype=np.float64)})

    assert not reply.accepted
    assert "got float64[1000], expected float32[1000]" in reply.reason
    _assert_round_committed_without_hostile(network, hostile, study_id, "float64")


def test_duplicate_submission_is_rejected(network: Network, hostile: Hostile) -> None:
    network.stop_node("switzerland")  # still counted online for a while: keeps the round open
    study_id = network.submit(passthrough_study(rounds=1, min_nodes=3, round_deadline_s=4.0))
    task = hostile.task()
    weights = hostile.model(task)
    weights["w"] += 0.001

    first = hostile.client.submit(task, 10, {}, weights)
    second = hostile.client.submit(task, 10, {}, weights)

    assert first.accepted, first.reason
    assert not second.accepted
    assert "duplicate" in second.reason
    hostile.refuse_evaluation()
    status = network.wait_done(study_id, timeout_s=60)
    assert status.rounds[0].accepted == 3
    assert np.allclose(network.admin.download(status.model_sha256)["w"], 0.001)


def test_stale_round_update_is_rejected(network: Network, hostile: Hostile) -> None:
    study_id = network.submit(passthrough_study(rounds=2, min_nodes=3, round_deadline_s=15.0))
    old_task = hostile.task()
    weights = hostile.model(old_task)
    hostile.client.refuse(old_task, "busy", "testing a stale replay")
    next_task = hostile.task()
    assert next_task.round == old_task.round + 1

    reply = hostile.client.submit(old_task, 10, {}, {"w": weights["w"] + 5.0})

    assert not reply.accepted
    assert "expired" in reply.reason or "closed" in reply.reason
    hostile.client.refuse(next_task, "busy", "done testing")
    hostile.refuse_evaluation()
    status = network.wait_done(study_id, timeout_s=60)
    assert status.completed_rounds == 2
    assert np.allclose(network.admin.download(status.model_sha256)["w"], 0.002)


def test_update_for_another_nodes_task_is_rejected(network: Network, hostile: Hostile) -> None:
    network.submit(passthrough_study(rounds=1, min_nodes=3, round_deadline_s=15.0))
    task = hostile.task()
    forged = pb.Task()
    forged.CopyFrom(task)
    forged.task_id = "0" * 32

    reply = hostile.client.submit(forged, 10, {}, hostile.model(task))

    assert not reply.accepted
    assert "unknown" in reply.reason
