from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from medfed.cli.study import prepare
from medfed.coordinator.client import AdminClient
from medfed.coordinator.config import load_coordinator_config
from medfed.coordinator.service import Coordinator
from medfed.data.registry import DatasetRegistry
from medfed.demo.consortium import Consortium
from medfed.errors import AuthError, TransportError
from medfed.node.agent import NodeAgent
from medfed.node.client import CoordinatorClient
from medfed.node.executor import TaskExecutor
from medfed.node.policy import LocalPolicy
from medfed.pki.ca import CertificateAuthority
from medfed.pki.signer import CertificateSigner
from medfed.transport.inmemory import InMemoryChannel
from tests.e2e.harness import HOSPITALS, make_consortium, passthrough_study

ROUNDS = 2
PASSTHROUGH_DELTA = 0.001  # what the passthrough plan adds to every weight in a round
TASKS = ROUNDS + 1  # a training task per round, then the final round's evaluation


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Consortium, Coordinator]]:
    consortium = make_consortium(tmp_path)
    coordinator = Coordinator(load_coordinator_config(consortium.coordinator_config))
    yield consortium, coordinator  # its gRPC server is never started; no call touches it
    coordinator.stop(grace_s=0)


def _node(consortium: Consortium, coordinator: Coordinator, node: str) -> CoordinatorClient:
    certs = consortium.node_certs(node)
    pem = (certs / f"{node}.crt").read_bytes()
    signer = CertificateSigner.from_files(certs / f"{node}.crt", certs / f"{node}.key").sign
    return CoordinatorClient(channel=InMemoryChannel(coordinator.handlers, pem), signer=signer)


def _admin(consortium: Consortium, coordinator: Coordinator) -> AdminClient:
    pem = (consortium.root / "admin" / "certs" / "researcher.crt").read_bytes()
    return AdminClient(channel=InMemoryChannel(coordinator.handlers, pem))


def _agent(consortium: Consortium, coordinator: Coordinator, node: str) -> NodeAgent:
    """As ``medfed.node.service.build_agent`` builds one, but over the in-memory channel."""
    state = consortium.node_state(node)
    registry = DatasetRegistry(state)
    return NodeAgent(
        _node(consortium, coordinator, node),
        TaskExecutor(registry, LocalPolicy(state)),
        registry.sizes,
        heartbeat_interval_s=0.2,
        poll_wait_s=0.5,
    )


def test_a_node_certificate_is_identified_and_kept_to_its_role(
    world: tuple[Consortium, Coordinator],
) -> None:
    consortium, coordinator = world

    assert _node(consortium, coordinator, "cleveland").heartbeat([]).node == "cleveland"
    pem = (consortium.node_certs("cleveland") / "cleveland.crt").read_bytes()
    with pytest.raises(AuthError, match="node certificate") as info:
        AdminClient(channel=InMemoryChannel(coordinator.handlers, pem)).nodes()
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert info.value.__cause__.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_certificate_is_refused(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    client = _node(consortium, coordinator, "hungary")
    client.heartbeat([])

    CertificateAuthority.load(consortium.ca_dir).revoke("hungary")

    with pytest.raises(AuthError, match="revoked"):
        client.heartbeat([])


def test_a_closed_client_fails_as_a_transport_error(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    client = _node(consortium, coordinator, "cleveland")
    client.close()

    with pytest.raises(TransportError, match="channel closed"):
        client.heartbeat([])


def test_a_whole_study_runs_without_sockets(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    agents = [_agent(consortium, coordinator, node) for node in HOSPITALS]
    threads = [threading.Thread(target=agent.run, daemon=True) for agent in agents]
    for thread in threads:
        thread.start()
    admin = _admin(consortium, coordinator)
    try:
        for node in HOSPITALS:  # one heartbeat each, so all four are online before we submit
            _node(consortium, coordinator, node).heartbeat(["heart_disease"])
        spec, initial = prepare(passthrough_study(rounds=ROUNDS, min_nodes=4))
        study_id = admin.submit(spec, initial)
        states = [status.state for status in admin.watch(study_id, timeout_s=30)]
        status = admin.status(study_id)
    finally:
        for agent in agents:
            agent.shutdown()
        for thread in threads:
            thread.join(timeout=5)

    assert states[-1] == "completed"
    assert not any(thread.is_alive() for thread in threads)
    assert [r.accepted for r in status.rounds] == [len(HOSPITALS)] * ROUNDS
    assert [(a.completed_tasks, a.fatal) for a in agents] == [(TASKS, None)] * len(agents)
    final = admin.download(status.model_sha256)
    assert final.keys() == initial.keys()
    assert np.allclose(final["w"], initial["w"] + ROUNDS * PASSTHROUGH_DELTA)


def test_what_a_node_says_is_what_an_admin_sees(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    admin = _admin(consortium, coordinator)
    assert admin.nodes() == []

    _node(consortium, coordinator, "cleveland").heartbeat(["heart_disease"])

    assert [(n.name, n.online) for n in admin.nodes()] == [("cleveland", True)]
