from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from medfed.coordinator.client import AdminClient
from medfed.errors import AuthError, TransportError
from medfed.node.client import CoordinatorClient
from medfed.node.service import check_own_certificate
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.transport.tls import TlsFiles
from tests.e2e.harness import Network


def _node_tls(network: Network, name: str) -> TlsFiles:
    certs = network.consortium.node_certs(name)
    return TlsFiles(certs / f"{name}.crt", certs / f"{name}.key", certs / "ca.crt")


def _client(network: Network, tls: TlsFiles) -> CoordinatorClient:
    return CoordinatorClient(network.consortium.address, tls, server_name="localhost")


def _assert_handshake_refused(network: Network, cert: Path, key: Path) -> None:
    tls = TlsFiles(cert, key, network.consortium.ca_dir / "ca.crt")
    client = _client(network, tls)
    try:
        with pytest.raises(TransportError):
            client.heartbeat([])
    finally:
        client.close()


def test_a_valid_node_certificate_is_accepted(network: Network) -> None:
    network.start_coordinator()
    client = _client(network, _node_tls(network, "cleveland"))
    try:
        assert client.heartbeat(["heart_disease"]).node == "cleveland"
    finally:
        client.close()


def test_no_client_certificate_is_refused(network: Network) -> None:
    network.start_coordinator()
    ca = (network.consortium.ca_dir / "ca.crt").read_bytes()
    channel = grpc.secure_channel(
        network.consortium.address,
        grpc.ssl_channel_credentials(root_certificates=ca),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    try:
        with pytest.raises(grpc.RpcError) as info:
            rpc.NodeServiceStub(channel).Heartbeat(pb.HeartbeatRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_certificate_from_another_ca_is_refused(network: Network, tmp_path: Path) -> None:
    network.start_coordinator()
    rogue = CertificateAuthority.init(tmp_path / "rogue-ca", "rogue")
    issued = rogue.issue("cleveland", Role.NODE, tmp_path / "rogue")
    _assert_handshake_refused(network, issued.cert, issued.key or Path())


def test_expired_certificate_is_refused(network: Network, tmp_path: Path) -> None:
    network.start_coordinator()
    ca = CertificateAuthority.load(network.consortium.ca_dir)
    now = datetime.now(UTC)
    issued = ca.issue(
        "expired",
        Role.NODE,
        tmp_path / "expired",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    tls = TlsFiles(issued.cert, issued.key or Path(), network.consortium.ca_dir / "ca.crt")
    with pytest.raises(AuthError, match="expired"):
        check_own_certificate(tls)
    _assert_handshake_refused(network, issued.cert, issued.key or Path())


def test_revoked_node_is_refused_and_its_open_poll_is_closed(network: Network) -> None:
    network.start_coordinator()
    client = _client(network, _node_tls(network, "hungary"))
    try:
        client.heartbeat([])
        started = time.monotonic()
        errors: list[BaseException] = []

        def long_poll() -> None:
            try:
                client.pull(wait_s=20)
            except BaseException as exc:
                errors.append(exc)

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)
        CertificateAuthority.load(network.consortium.ca_dir).revoke("hungary")
        poller.join(timeout=10)

        assert errors and isinstance(errors[0], AuthError), errors
        assert "revoked" in str(errors[0])
        assert time.monotonic() - started < 10
        with pytest.raises(AuthError, match="revoked"):
            client.heartbeat([])
    finally:
        client.close()


def test_admin_call_with_a_node_certificate_is_refused(network: Network) -> None:
    network.start_coordinator()
    tls = _node_tls(network, "cleveland")
    with (
        AdminClient(network.consortium.address, tls, server_name="localhost") as admin,
        pytest.raises(AuthError, match="node certificate"),
    ):
        admin.nodes()


def test_node_call_with_an_admin_certificate_is_refused(network: Network) -> None:
    network.start_coordinator()
    certs = network.consortium.root / "admin" / "certs"
    tls = TlsFiles(certs / "researcher.crt", certs / "researcher.key", certs / "ca.crt")
    client = _client(network, tls)
    try:
        with pytest.raises(AuthError, match="admin certificate"):
            client.heartbeat([])
    finally:
        client.close()


def test_revoked_node_agent_stops_with_a_clear_error(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes(["switzerland"])
    CertificateAuthority.load(network.consortium.ca_dir).revoke("switzerland")
    _agent, thread = network.agents["switzerland"]
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert "revoked" in str(network.errors["switzerland"])
    network.agents.pop("switzerland")
    recorded = [json.loads(line) for line in network.admin.ledger()]
    joined = [e["payload"]["name"] for e in recorded if e["kind"] == "member.joined"]
    revoked = [e["payload"] for e in recorded if e["kind"] == "member.revoked"]
    assert "switzerland" in joined and [r["name"] for r in revoked] == ["switzerland"]
