from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from medfed.data.registry import DatasetRegistry, DatasetSizes
from medfed.node.client import CoordinatorClient
from medfed.pki.signer import CertificateSigner
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.transport.tls import TlsFiles
from tests.e2e.harness import Network, passthrough_study

HONEST = ["cleveland", "hungary", "switzerland"]
HOSTILE = "va_long_beach"


class Hostile:
    """A node with a valid certificate that sends whatever a test tells it to; its heartbeats
    announce ``announce`` (by default its registered datasets, sized, as an honest node)."""

    def __init__(
        self, network: Network, announce: Sequence[str | DatasetSizes] | None = None
    ) -> None:
        certs = network.consortium.node_certs(HOSTILE)
        tls = TlsFiles(certs / f"{HOSTILE}.crt", certs / f"{HOSTILE}.key", certs / "ca.crt")
        signer = CertificateSigner.from_files(tls.cert, tls.key).sign  # a member: it signs
        self.client = CoordinatorClient(
            network.consortium.address, tls, server_name="localhost", signer=signer
        )
        registry = DatasetRegistry(network.consortium.node_state(HOSTILE))
        self.announce = list(registry.sizes() if announce is None else announce)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            self.client.heartbeat(self.announce)
            self._stop.wait(0.3)

    def task(self) -> pb.Task:
        for _ in range(60):
            task = self.client.pull(wait_s=1.0)
            if task is not None:
                return task
        raise TimeoutError("no task for the hostile node")

    def model(self, task: pb.Task) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.client.fetch_model(task.model_sha256).items()}

    def refuse_evaluation(self) -> None:
        task = self.task()
        assert task.kind == pb.TASK_KIND_EVALUATE
        self.client.refuse(task, "not_now", "hostile test node skips evaluation")

    def close(self) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        self.client.close()


@pytest.fixture
def hostile(network: Network) -> Iterator[Hostile]:
    network.start_coordinator()
    network.start_nodes(HONEST)
    node = Hostile(network)
    network.wait_online([*HONEST, HOSTILE])
    yield node
    node.close()


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
