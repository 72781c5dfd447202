"""The hostile hospital of issue 12: one authenticated node speaking raw gRPC over mutual TLS.

Each attack runs on its own threads until :meth:`Attack.stop`, re-opening every call the moment
the coordinator ends it (refused, cut or answered), as a scripted attacker would. Used by
``bench/hostile_load.py``; every call goes to loopback only.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import numpy as np

from medfed.data.registry import DatasetSizes
from medfed.errors import TransportError
from medfed.node.client import CoordinatorClient
from medfed.protocol import framing, tensors
from medfed.protocol.streams import model_frames
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.transport.grpc_factory import make_channel
from medfed.transport.methods import method_path
from medfed.transport.tls import TlsFiles

STALL_DIM = 1_000_000
"""The attacker's own studies' model: 4 MB, so one 1 MiB chunk leaves the upload unfinished."""


class Attack:
    """``calls`` concurrent calls made by ``open_call`` on ``channels`` channels, each re-opened
    as soon as it ends; ``outcomes`` counts how they ended (status code names)."""

    def __init__(
        self,
        address: str,
        tls: TlsFiles,
        open_call: Callable[[grpc.Channel, threading.Event], grpc.Future],
        calls: int,
        channels: int = 4,
    ) -> None:
        self._channels = [
            make_channel(address, tls, server_name="localhost") for _ in range(channels)
        ]
        self._open_call = open_call
        self._calls = calls
        self.stopped = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def start(self) -> None:
        for i in range(self._calls):
            self._launch(self._channels[i % len(self._channels)])

    def _launch(self, channel: grpc.Channel) -> None:
        if self.stopped.is_set():
            return
        try:
            future = self._open_call(channel, self.stopped)
        except ValueError:  # channel closed by stop()
            return
        future.add_done_callback(lambda f: self._ended(f, channel))

    def _ended(self, future: grpc.Future, channel: grpc.Channel) -> None:
        error = future.exception()
        code = error.code().name if isinstance(error, grpc.Call) else "OK"
        with self._lock:
            self.outcomes[code] += 1
        self._launch(channel)

    def stop(self) -> None:
        self.stopped.set()
        for channel in self._channels:
            channel.close()


def long_poll(channel: grpc.Channel, stopped: threading.Event) -> grpc.Future:
    pull = channel.unary_unary(
        method_path("NodeService", "PullTask"),
        request_serializer=pb.PullTaskRequest.SerializeToString,
        response_deserializer=pb.PullTaskReply.FromString,
    )
    future: grpc.Future = pull.future(pb.PullTaskRequest(wait_ms=30_000), timeout=40)
    return future


def _submit(channel: grpc.Channel) -> grpc.StreamUnaryMultiCallable:
    return channel.stream_unary(
        method_path("NodeService", "SubmitUpdate"),
        request_serializer=None,
        response_deserializer=pb.SubmitReply.FromString,
    )


def silent_upload(channel: grpc.Channel, stopped: threading.Event) -> grpc.Future:
    """An upload stream that never sends a byte."""

    def nothing() -> Iterator[bytes]:
        stopped.wait(120)
        yield from ()

    future: grpc.Future = _submit(channel).future(nothing(), timeout=120)
    return future


def big_heartbeat(channel: grpc.Channel, stopped: threading.Event) -> grpc.Future:
    """The issue's 4,194,155-byte dataset list: 1000 names of 4191 characters (the first 155
    longer), just under gRPC's 4 MiB message cap, so a listing that carries it is over."""
    names = [f"{i:04d}" + "x" * (4187 + (155 if i == 0 else 0)) for i in range(1000)]
    request = pb.HeartbeatRequest(datasets=names)
    beat = channel.unary_unary(
        method_path("NodeService", "Heartbeat"),
        request_serializer=pb.HeartbeatRequest.SerializeToString,
        response_deserializer=pb.HeartbeatReply.FromString,
    )
    future: grpc.Future = beat.future(request, timeout=30)
    return future


def heartbeat(channel: grpc.Channel, stopped: threading.Event) -> grpc.Future:
    """A valid, small heartbeat: the cheapest call a node may make, as fast as it is answered."""
    beat = channel.unary_unary(
        method_path("NodeService", "Heartbeat"),
        request_serializer=pb.HeartbeatRequest.SerializeToString,
        response_deserializer=pb.HeartbeatReply.FromString,
    )
    future: grpc.Future = beat.future(pb.HeartbeatRequest(datasets=["heart_disease"]), timeout=30)
    return future


class Staller:
    """Pulls the attacker's tasks (its own studies) and answers each with a header, the
    manifest and one 1 MiB chunk, then silence until the coordinator cuts the upload."""

    def __init__(self, address: str, tls: TlsFiles, dataset: str) -> None:
        self._channel = make_channel(address, tls, server_name="localhost")
        self._client = CoordinatorClient(channel=self._channel)
        self._dataset = dataset
        self.stopped = threading.Event()
        self.stalls = 0
        self.outcomes: Counter[str] = Counter()
        self._threads = [
            threading.Thread(target=self._beat, daemon=True),
            threading.Thread(target=self._pull, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(timeout=40)
        self._channel.close()

    def _beat(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(TransportError):
                self._client.heartbeat([DatasetSizes(self._dataset, 100, 100)])
            self.stopped.wait(0.5)

    def _pull(self) -> None:
        weights = {"w": np.zeros(STALL_DIM, dtype=np.float32)}
        while not self.stopped.is_set():
            try:
                task = self._client.pull(wait_s=2.0)
            except TransportError:
                self.stopped.wait(0.5)
                continue
            if task is not None and task.kind == pb.TASK_KIND_TRAIN:
                self.stalls += 1
                future = _submit(self._channel).future(self._frames(task, weights), timeout=300)
                future.add_done_callback(self._ended)

    def _ended(self, future: grpc.Future) -> None:
        error = future.exception()
        self.outcomes[error.code().name if isinstance(error, grpc.Call) else "OK"] += 1

    def _frames(self, task: pb.Task, weights: tensors.Weights) -> Iterator[bytes]:
        header = pb.UpdateHeader(
            task_id=task.task_id, study_id=task.study_id, round=task.round, num_examples=10
        )
        manifest = tensors.manifest_to_proto(tensors.manifest_of(weights))
        data = model_frames(manifest, weights, framing.UPDATE_MANIFEST, framing.UPDATE_DATA)
        yield framing.frame_message(framing.UPDATE_HEADER, header)
        yield next(data)
        yield next(data)
        self.stopped.wait(300)


def junk_heartbeats(
    address: str, tls: TlsFiles, count: int, channels: int = 40, in_flight: int = 24
) -> Counter[str]:
    """``count`` unparsable 20-byte Heartbeat requests answered by the coordinator's handlers,
    over ``channels`` connections with ``in_flight`` calls open on each (the coordinator answers
    refusals late: many connections keep the flood going). Streams the HTTP/2 layer refuses
    (UNAVAILABLE: a connection's stream limit crossed in a race) never reach a handler; they are
    counted apart and sent again."""
    open_channels = [make_channel(address, tls, server_name="localhost") for _ in range(channels)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    done = threading.Event()

    def launch(channel: grpc.Channel) -> None:
        if done.is_set():
            return
        call = channel.unary_unary(method_path("NodeService", "Heartbeat"))
        call.future(b"\xff" * 20, timeout=60).add_done_callback(lambda f: ended(f, channel))

    def ended(future: grpc.Future, channel: grpc.Channel) -> None:
        error = future.exception()
        with lock:
            outcomes[error.code().name if isinstance(error, grpc.Call) else "OK"] += 1
            if sum(outcomes.values()) - outcomes["UNAVAILABLE"] >= count:
                done.set()
        launch(channel)

    try:
        for channel in open_channels:
            for _ in range(in_flight):
                launch(channel)
        done.wait(timeout=count)  # at worst one answer a second
    finally:
        for channel in open_channels:
            channel.close()
    return outcomes
