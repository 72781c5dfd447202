"""A hostile hospital with a valid certificate, speaking raw gRPC over mutual TLS (issue 12)."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc import _server as grpc_server  # private: counts the calls grpc keeps alive

from medfed.data.registry import DatasetSizes
from medfed.errors import TransportError
from medfed.node.client import CoordinatorClient
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.protocol import framing, tensors
from medfed.protocol.streams import model_frames
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.transport.grpc_factory import make_channel
from medfed.transport.methods import method_path
from medfed.transport.tls import TlsFiles
from tests.e2e.harness import HOSPITALS, Network, passthrough_study

MALLORY = "mallory"


def _mallory(network: Network, tmp_path: Path) -> TlsFiles:
    issued = CertificateAuthority.load(network.consortium.ca_dir).issue(
        MALLORY, Role.NODE, tmp_path / MALLORY
    )
    assert issued.key is not None
    return TlsFiles(issued.cert, issued.key, network.consortium.ca_dir / "ca.crt")


def _channel(network: Network, tls: TlsFiles) -> grpc.Channel:
    return make_channel(network.consortium.address, tls, server_name="localhost")


def _configure(network: Network, **values: float) -> None:
    """Top-level coordinator settings, before the coordinator starts."""
    path = network.consortium.coordinator_config
    lines = "".join(f"{key} = {value}\n" for key, value in values.items())
    path.write_text(lines + path.read_text())


def test_a_node_flooding_long_polls_is_refused_beyond_its_share_and_others_go_on(
    network: Network, tmp_path: Path
) -> None:
    network.start_coordinator()
    network.start_nodes()
    channel = _channel(network, _mallory(network, tmp_path))
    pull = rpc.NodeServiceStub(channel).PullTask
    stop = threading.Event()
    refused: list[str] = []

    def flood() -> None:
        while not stop.is_set():
            calls = [pull.future(pb.PullTaskRequest(wait_ms=2000), timeout=20) for _ in range(20)]
            for call in calls:
                try:
                    call.result()
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        refused.append(exc.details() or "")

    attacker = threading.Thread(target=flood, daemon=True)
    attacker.start()
    try:
        study = network.submit(passthrough_study(rounds=1, nodes=tuple(HOSPITALS), min_nodes=4))
        status = network.wait_done(study, timeout_s=90)
        names = {n.name for n in network.admin.nodes()}
    finally:
        stop.set()
        attacker.join(timeout=30)
        channel.close()

    assert status.state == "completed"
    assert MALLORY in names
    assert refused and "'mallory' already has 2 long-polls open" in refused[0]


def test_an_upload_that_never_sends_its_header_is_cut(
    network: Network, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _configure(network, stream_first_message_s=1.0)
    network.start_coordinator()
    channel = _channel(network, _mallory(network, tmp_path))
    submit = channel.stream_unary(
        method_path("NodeService", "SubmitUpdate"),
        request_serializer=None,
        response_deserializer=pb.SubmitReply.FromString,
    )
    never = threading.Event()

    def silent() -> Iterator[bytes]:
        never.wait(30)
        yield from ()

    try:
        with (
            caplog.at_level(logging.WARNING, logger="medfed.transport"),
            pytest.raises(grpc.RpcError) as info,
        ):
            submit(silent(), timeout=25)
    finally:
        never.set()
        channel.close()

    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert "cutting SubmitUpdate from mallory: nothing arrived within 1 s" in caplog.text


def test_an_open_upload_is_cut_when_its_certificate_is_revoked(
    network: Network, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator = network.start_coordinator()
    channel = _channel(network, _mallory(network, tmp_path))
    submit = channel.stream_unary(
        method_path("NodeService", "SubmitUpdate"),
        request_serializer=None,
        response_deserializer=pb.SubmitReply.FromString,
    )
    never = threading.Event()

    def silent() -> Iterator[bytes]:
        never.wait(30)
        yield from ()

    try:
        upload = submit.future(silent(), timeout=25)
        _wait_for(lambda: coordinator.guard.watchdog.watching() == 1)
        CertificateAuthority.load(network.consortium.ca_dir).revoke(MALLORY)
        with caplog.at_level(logging.WARNING, logger="medfed.transport"):
            error = upload.exception(timeout=20)
    finally:
        never.set()
        channel.close()

    assert isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.CANCELLED
    assert "cutting SubmitUpdate from mallory: certificate of 'mallory' was revoked" in caplog.text


def _stalled_upload(
    channel: grpc.Channel, task: pb.Task, weights: tensors.Weights, release: threading.Event
) -> grpc.Future:
    """Header, manifest and one 1 MiB chunk of an update, then silence until ``release``."""
    header = pb.UpdateHeader(
        task_id=task.task_id, study_id=task.study_id, round=task.round, num_examples=10
    )
    manifest = tensors.manifest_to_proto(tensors.manifest_of(weights))
    data = model_frames(manifest, weights, framing.UPDATE_MANIFEST, framing.UPDATE_DATA)

    def frames() -> Iterator[bytes]:
        yield framing.frame_message(framing.UPDATE_HEADER, header)
        yield next(data)
        yield next(data)
        release.wait(60)

    submit = channel.stream_unary(
        method_path("NodeService", "SubmitUpdate"),
        request_serializer=None,
        response_deserializer=pb.SubmitReply.FromString,
    )
    future: grpc.Future = submit.future(frames(), timeout=60)
    return future


def test_a_stalled_upload_frees_the_staging_buffer_when_its_round_closes(
    network: Network, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _configure(network, upload_buffers=1)
    coordinator = network.start_coordinator()
    network.start_nodes()
    channel = _channel(network, _mallory(network, tmp_path))
    mallory = CoordinatorClient(channel=channel)
    release = threading.Event()
    beats = threading.Thread(target=_heartbeats, args=(mallory, release), daemon=True)
    beats.start()
    network.wait_online([MALLORY])
    try:
        stalled_study = network.submit(
            passthrough_study(
                rounds=1, dim=1_000_000, nodes=(MALLORY,), min_nodes=1, round_deadline_s=3.0
            )
        )
        task = mallory.pull(wait_s=10)
        assert task is not None
        weights = {"w": np.zeros(1_000_000, dtype=np.float32)}
        upload = _stalled_upload(channel, task, weights, release)
        _wait_for(lambda: any(s.messages >= 3 for s in coordinator.guard.watchdog._streams))

        honest = network.submit(passthrough_study(rounds=1, nodes=tuple(HOSPITALS), min_nodes=4))
        status = network.wait_done(honest, timeout_s=60)
    finally:
        release.set()
        beats.join(timeout=10)
        channel.close()

    assert status.state == "completed", status.message
    with pytest.raises(grpc.RpcError):
        upload.result(timeout=30)
    assert "cutting SubmitUpdate from mallory: round 1 closed" in caplog.text
    listed = [s.study_id for s in network.admin.studies(page_size=1)]
    assert sorted(listed) == sorted([honest, stalled_study])


def _heartbeats(client: CoordinatorClient, stop: threading.Event) -> None:
    while not stop.is_set():
        client.heartbeat([DatasetSizes("heart_disease", train_rows=100, test_rows=100)])
        stop.wait(0.3)


def _wait_for(ready: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def test_an_oversized_announcement_is_refused_and_admins_still_list_nodes(
    network: Network, tmp_path: Path
) -> None:
    network.start_coordinator()
    mallory = CoordinatorClient(channel=_channel(network, _mallory(network, tmp_path)))
    try:
        with pytest.raises(TransportError, match="at most 262144 bytes"):
            mallory.heartbeat([f"{i:04d}" + "x" * 4000 for i in range(1000)])  # ~4 MiB
        with pytest.raises(TransportError, match="is not a dataset name"):
            mallory.heartbeat(["Not A Name"])
        mallory.heartbeat([f"{i:06d}" + "x" * 57 for i in range(1000)])  # 64 KiB: allowed
    finally:
        mallory.close()

    nodes = network.admin.nodes(page_size=1)

    assert [n.name for n in nodes] == [MALLORY]
    assert len(nodes[0].datasets) == 1000


def _live_grpc_calls() -> int:
    gc.collect()
    return sum(type(o) is grpc_server._RPCState for o in gc.get_objects())


def test_junk_requests_are_refused_unparsed_without_tracebacks_or_leaks(
    network: Network, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator = network.start_coordinator()
    coordinator.guard.tarpit.delay_s = 0.01  # refusals are held 1 s by default: too slow here
    channel = _channel(network, _mallory(network, tmp_path))
    heartbeat = channel.unary_unary(method_path("NodeService", "Heartbeat"))
    codes: set[grpc.StatusCode] = set()

    def junk(count: int) -> None:
        for _ in range(count):
            try:
                heartbeat(b"\xff" * 20, timeout=10)
            except grpc.RpcError as exc:
                codes.add(exc.code())

    junk(20)
    before = _live_grpc_calls()
    with caplog.at_level(logging.INFO):
        junk(300)
        CertificateAuthority.load(network.consortium.ca_dir).revoke(MALLORY)
        junk(50)
    leaked = _live_grpc_calls() - before
    channel.close()

    assert codes == {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED}
    assert leaked < 50  # grpcio keeps every junk call it parses itself (~300 here)
    assert not [r for r in caplog.records if r.exc_info]
    assert sum("malformed Heartbeat" in r.getMessage() for r in caplog.records) <= 1
