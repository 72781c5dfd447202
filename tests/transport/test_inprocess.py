from __future__ import annotations

import threading
import time
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
from medfed.transport.inprocess import InProcessChannel, InProcessRpcError
from tests.e2e.harness import HOSPITALS, make_consortium, passthrough_study


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Consortium, Coordinator]]:
    consortium = make_consortium(tmp_path)
    coordinator = Coordinator(load_coordinator_config(consortium.coordinator_config))
    yield consortium, coordinator
    coordinator.stop(grace_s=0)


def _channel(consortium: Consortium, coordinator: Coordinator, node: str) -> InProcessChannel:
    pem = (consortium.node_certs(node) / f"{node}.crt").read_bytes()
    return InProcessChannel(coordinator.handlers, pem)


def _admin(consortium: Consortium, coordinator: Coordinator) -> AdminClient:
    pem = (consortium.root / "admin" / "certs" / "researcher.crt").read_bytes()
    return AdminClient(channel=InProcessChannel(coordinator.handlers, pem))


def test_a_node_certificate_is_identified_and_kept_to_its_role(
    world: tuple[Consortium, Coordinator],
) -> None:
    consortium, coordinator = world
    client = CoordinatorClient(channel=_channel(consortium, coordinator, "cleveland"))

    assert client.heartbeat(["heart_disease"]).node == "cleveland"
    with pytest.raises(AuthError, match="node certificate"):
        AdminClient(channel=_channel(consortium, coordinator, "cleveland")).nodes()


def test_a_revoked_certificate_is_refused(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    CertificateAuthority.load(consortium.ca_dir).revoke("hungary")

    with pytest.raises(AuthError, match="revoked"):
        CoordinatorClient(channel=_channel(consortium, coordinator, "hungary")).heartbeat([])


def test_unknown_method_and_closed_channel(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    channel = _channel(consortium, coordinator, "cleveland")

    with pytest.raises(InProcessRpcError) as info:
        channel.unary_unary("/medfed.v1.NodeService/Nope")(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    channel.close()
    with pytest.raises(TransportError, match="channel closed"):
        CoordinatorClient(channel=channel).heartbeat([])


def test_a_whole_study_runs_without_sockets(world: tuple[Consortium, Coordinator]) -> None:
    consortium, coordinator = world
    agents = []
    for node in HOSPITALS:
        state = consortium.node_state(node)
        registry = DatasetRegistry(state)
        agent = NodeAgent(
            CoordinatorClient(channel=_channel(consortium, coordinator, node)),
            TaskExecutor(registry, LocalPolicy(state)),
            lambda registry=registry: [e.name for e in registry.list()],  # type: ignore[misc]
            heartbeat_interval_s=0.2,
            poll_wait_s=0.5,
        )
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        agents.append((agent, thread))
    admin = _admin(consortium, coordinator)
    try:
        while len([n for n in admin.nodes() if n.online]) < len(HOSPITALS):
            time.sleep(0.05)
        pinned, weights = prepare(passthrough_study(rounds=2, min_nodes=4))
        study_id = admin.submit(pinned, weights)
        deadline = time.monotonic() + 30
        while admin.status(study_id).state != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = admin.status(study_id)

        assert status.state == "completed"
        assert [r.accepted for r in status.rounds] == [4, 4]
        assert np.allclose(admin.download(status.model_sha256)["w"], 0.002)
    finally:
        for agent, thread in agents:
            agent.shutdown()
            thread.join(timeout=5)
