from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from medfed.pki.ca import CertificateAuthority, IssuedFiles
from medfed.pki.identity import Identity, Role, identity_from_pem

SERVICE, METHOD = "medfed.test.Echo", "Echo"


@pytest.fixture
def live_ca(tmp_path: Path) -> CertificateAuthority:
    """A CA valid at the real current time: TLS checks dates against the wall clock."""
    return CertificateAuthority.init(tmp_path / "live-ca", "acme-health")


def _read_pair(files: IssuedFiles) -> tuple[bytes, bytes]:
    if files.key is None:
        raise ValueError("issue() always writes a key")
    return files.key.read_bytes(), files.cert.read_bytes()


def _echo(callers: list[Identity]) -> grpc.GenericRpcHandler[bytes, bytes]:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        # grpc-stubs types the values as bytes; grpc returns a list of bytes per property
        pems: list[bytes] = list(context.auth_context()["x509_pem_cert"])  # type: ignore[arg-type]
        callers.append(identity_from_pem(pems[0]))
        return request

    return grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(echo)}
    )


@contextmanager
def _serve(files: IssuedFiles, ca_pem: bytes, callers: list[Identity]) -> Iterator[int]:
    credentials = grpc.ssl_server_credentials(
        [_read_pair(files)], root_certificates=ca_pem, require_client_auth=True
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        server = grpc.server(pool, handlers=[_echo(callers)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        try:
            yield port
        finally:
            server.stop(grace=None).wait(timeout=10)


def _call(
    port: int, ca_pem: bytes, files: IssuedFiles, options: Sequence[tuple[str, str]] = ()
) -> bytes:
    key, cert = _read_pair(files)
    credentials = grpc.ssl_channel_credentials(ca_pem, private_key=key, certificate_chain=cert)
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        reply: bytes = channel.unary_unary(
            f"/{SERVICE}/{METHOD}", request_serializer=None, response_deserializer=None
        )(b"ping", timeout=10)
        return reply


def test_node_certificate_is_accepted_over_mutual_tls(
    live_ca: CertificateAuthority, tmp_path: Path
) -> None:
    coordinator = live_ca.issue("coordinator", Role.COORDINATOR, tmp_path / "coordinator")
    node = live_ca.issue("cleveland", Role.NODE, tmp_path / "node")
    ca_pem = live_ca.ca_cert_path.read_bytes()
    callers: list[Identity] = []
    with _serve(coordinator, ca_pem, callers) as port:
        assert _call(port, ca_pem, node) == b"ping"
    assert [(c.name, c.role) for c in callers] == [("cleveland", Role.NODE)]


def test_certificate_from_another_ca_is_rejected(
    live_ca: CertificateAuthority, tmp_path: Path
) -> None:
    other_ca = CertificateAuthority.init(tmp_path / "other-ca", "acme-health")
    coordinator = live_ca.issue("coordinator", Role.COORDINATOR, tmp_path / "coordinator")
    intruder = other_ca.issue("cleveland", Role.NODE, tmp_path / "intruder")
    ca_pem = live_ca.ca_cert_path.read_bytes()
    callers: list[Identity] = []
    with _serve(coordinator, ca_pem, callers) as port, pytest.raises(grpc.RpcError) as failure:
        _call(port, ca_pem, intruder)
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert callers == []


def test_node_certificate_cannot_serve(live_ca: CertificateAuthority, tmp_path: Path) -> None:
    impostor = live_ca.issue("mayo", Role.NODE, tmp_path / "impostor")
    node = live_ca.issue("cleveland", Role.NODE, tmp_path / "node")
    ca_pem = live_ca.ca_cert_path.read_bytes()
    with _serve(impostor, ca_pem, []) as port, pytest.raises(grpc.RpcError):
        _call(port, ca_pem, node)


def test_coordinator_name_is_checked_against_its_sans(
    live_ca: CertificateAuthority, tmp_path: Path
) -> None:
    coordinator = live_ca.issue(
        "coordinator", Role.COORDINATOR, tmp_path / "coordinator", sans=["coord.example"]
    )
    node = live_ca.issue("cleveland", Role.NODE, tmp_path / "node")
    ca_pem = live_ca.ca_cert_path.read_bytes()
    with _serve(coordinator, ca_pem, []) as port:
        named = [("grpc.ssl_target_name_override", "coord.example")]
        assert _call(port, ca_pem, node, named) == b"ping"
        with pytest.raises(grpc.RpcError):
            _call(port, ca_pem, node, [("grpc.ssl_target_name_override", "evil.example")])
