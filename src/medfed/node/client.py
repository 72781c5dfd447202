"""The node's side of the wire: a typed client over NodeService, errors mapped to medfed's tree."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import grpc

from medfed.protocol import tensors
from medfed.protocol.streams import receive_model
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.transport.errors import translate
from medfed.transport.grpc_factory import make_channel
from medfed.transport.tls import TlsFiles

AGENT_VERSION = "medfed-node/1"


class CoordinatorClient:
    def __init__(self, target: str, tls: TlsFiles, server_name: str = "") -> None:
        self._channel = make_channel(target, tls, server_name=server_name or None)
        self._stub = rpc.NodeServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def heartbeat(self, datasets: list[str], timeout_s: float = 10.0) -> pb.HeartbeatReply:
        try:
            reply: pb.HeartbeatReply = self._stub.Heartbeat(
                pb.HeartbeatRequest(datasets=datasets, agent_version=AGENT_VERSION),
                timeout=timeout_s,
            )
        except grpc.RpcError as exc:
            raise translate(exc, "heartbeat") from exc
        return reply

    def pull(self, wait_s: float) -> pb.Task | None:
        try:
            reply: pb.PullTaskReply = self._stub.PullTask(
                pb.PullTaskRequest(wait_ms=int(wait_s * 1000)), timeout=wait_s + 15.0
            )
        except grpc.RpcError as exc:
            raise translate(exc, "pull task") from exc
        return reply.task if reply.has_task else None

    def fetch_model(self, sha256: str, timeout_s: float = 300.0) -> tensors.Weights:
        """Download a model and check it is exactly the one asked for (by hash)."""
        try:
            stream = self._stub.FetchModel(pb.FetchModelRequest(sha256=sha256), timeout=timeout_s)
            return receive_model(iter(stream), sha256)
        except grpc.RpcError as exc:
            raise translate(exc, f"fetch model {sha256[:12]}") from exc

    def submit(
        self,
        task: pb.Task,
        num_examples: int,
        metrics: Mapping[str, float],
        weights: tensors.Weights | None,
        timeout_s: float = 300.0,
    ) -> pb.SubmitReply:
        header = pb.UpdateHeader(
            task_id=task.task_id,
            study_id=task.study_id,
            round=task.round,
            num_examples=num_examples,
            metrics=dict(metrics),
        )
        try:
            reply: pb.SubmitReply = self._stub.SubmitUpdate(
                _update_chunks(header, weights), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise translate(exc, "submit update") from exc
        return reply

    def refuse(self, task: pb.Task, code: str, message: str) -> None:
        try:
            self._stub.RefuseTask(
                pb.TaskRefusal(task_id=task.task_id, code=code, message=message), timeout=10.0
            )
        except grpc.RpcError as exc:
            raise translate(exc, "refuse task") from exc


def _update_chunks(
    header: pb.UpdateHeader, weights: tensors.Weights | None
) -> Iterator[pb.UpdateChunk]:
    yield pb.UpdateChunk(header=header)
    if weights is None:
        return
    manifest, chunks = tensors.encode_model(weights, with_hash=False)
    yield pb.UpdateChunk(manifest=manifest)
    for data in chunks:
        yield pb.UpdateChunk(data=data)
