"""The node's side of the wire: a typed client over NodeService, errors mapped to medfed's tree."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from medfed.ledger.entry import Head
from medfed.ledger.updates import sign_header
from medfed.ledger.wire import to_proto
from medfed.protocol import framing, tensors
from medfed.protocol.streams import model_frames, receive_model
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.training.score_histogram import ScoreHistogram
from medfed.transport.errors import rpc_errors
from medfed.transport.grpc_factory import connect
from medfed.transport.methods import method_path, model_download
from medfed.transport.tls import TlsFiles

if TYPE_CHECKING:  # the registry (and its data stack) is the node service's to load
    from medfed.data.registry import DatasetSizes

AGENT_VERSION = "medfed-node/1"


class CoordinatorClient:
    """NodeService over mutual TLS, or over ``channel`` when given (e.g. the in-memory twin,
    :class:`medfed.transport.inmemory.InMemoryChannel`)."""

    def __init__(
        self,
        target: str = "",
        tls: TlsFiles | None = None,
        server_name: str = "",
        *,
        channel: Any = None,
        signer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """``signer`` (the node's certificate key) signs every reply (:mod:`medfed.ledger.updates`);
        without one replies go unsigned, which a coordinator keeping a ledger refuses."""
        self._signer = signer
        self._channel = channel or connect(target, tls, server_name)
        self._stub = rpc.NodeServiceStub(self._channel)
        self._fetch = model_download(self._channel, "NodeService", "FetchModel")
        self._submit = self._channel.stream_unary(
            method_path("NodeService", "SubmitUpdate"),
            request_serializer=None,
            response_deserializer=pb.SubmitReply.FromString,
        )

    def close(self) -> None:
        self._channel.close()

    def heartbeat(
        self,
        datasets: Sequence[str | DatasetSizes],
        timeout_s: float = 10.0,
        verified: Head | None = None,
        approvals: Sequence[pb.ProtocolApproval] = (),
    ) -> pb.HeartbeatReply:
        """Say the node is alive and which datasets it holds; with each one's split sizes when
        given (a bare name leaves the sizes the coordinator last heard for that dataset), and the
        ledger head it verified (``verified``, gossiped to the other nodes)."""
        request = pb.HeartbeatRequest(agent_version=AGENT_VERSION)
        if verified is not None:
            request.verified_head.CopyFrom(to_proto(verified))
        request.approvals.extend(approvals)  # the steward's signed protocol approvals
        for item in datasets:
            if isinstance(item, str):
                request.datasets.append(item)
                continue
            request.datasets.append(item.name)
            request.dataset_sizes.add(
                name=item.name, train_rows=item.train_rows, test_rows=item.test_rows
            )
        with rpc_errors("heartbeat"):
            reply: pb.HeartbeatReply = self._stub.Heartbeat(request, timeout=timeout_s)
        return reply

    def pull(self, wait_s: float) -> pb.Task | None:
        with rpc_errors("pull task"):
            reply: pb.PullTaskReply = self._stub.PullTask(
                pb.PullTaskRequest(wait_ms=int(wait_s * 1000)), timeout=wait_s + 15.0
            )
        return reply.task if reply.has_task else None

    def fetch_model(self, sha256: str, timeout_s: float = 300.0) -> tensors.Weights:
        """Download a model and check it is exactly the one asked for (by hash)."""
        with rpc_errors(f"fetch model {sha256[:12]}"):
            stream = self._fetch(pb.FetchModelRequest(sha256=sha256), timeout=timeout_s)
            return receive_model(iter(stream), sha256)

    def submit(
        self,
        task: pb.Task,
        num_examples: int,
        metrics: Mapping[str, float],
        weights: tensors.Weights | None,
        timeout_s: float = 300.0,
        encrypted: tuple[list[str], bytes] | None = None,
        histogram: ScoreHistogram | None = None,
    ) -> pb.SubmitReply:
        header = pb.UpdateHeader(
            task_id=task.task_id,
            study_id=task.study_id,
            round=task.round,
            num_examples=num_examples,
            metrics=dict(metrics),
        )
        if encrypted is not None:
            header.encrypted_metric_names.extend(encrypted[0])
            header.encrypted_metrics = encrypted[1]
        if histogram is not None:
            header.score_histogram.positives.extend(histogram.positives.tolist())
            header.score_histogram.negatives.extend(histogram.negatives.tolist())
        digest = tensors.weights_sha256(weights) if weights is not None else ""
        if self._signer is not None:
            header.update_sha256 = digest
            sign_header(header, self._signer)
        frames = _update_frames(header, weights, digest)
        with rpc_errors("submit update"):
            reply: pb.SubmitReply = self._submit(frames, timeout=timeout_s)
        return reply

    def ledger_page(self, start: int, timeout_s: float = 60.0) -> pb.LedgerPage:
        """Ledger entries from height ``start`` on (one page; the caller asks again for more)."""
        with rpc_errors("fetch ledger"):
            page: pb.LedgerPage = self._stub.GetLedger(
                pb.LedgerRequest(start=start), timeout=timeout_s
            )
        return page

    def submit_secagg(self, answer: pb.SecAggAnswer, timeout_s: float = 60.0) -> pb.SubmitReply:
        with rpc_errors("submit secure-aggregation answer"):
            reply: pb.SubmitReply = self._stub.SubmitSecAgg(answer, timeout=timeout_s)
        return reply

    def refuse(self, task: pb.Task, code: str, message: str) -> None:
        with rpc_errors("refuse task"):
            self._stub.RefuseTask(
                pb.TaskRefusal(task_id=task.task_id, code=code, message=message), timeout=10.0
            )


def _update_frames(
    header: pb.UpdateHeader, weights: tensors.Weights | None, sha256: str
) -> Iterator[bytes]:
    yield framing.frame_message(framing.UPDATE_HEADER, header)
    if weights is None:
        return
    manifest = tensors.manifest_to_proto(tensors.manifest_of(weights), sha256)
    yield from model_frames(manifest, weights, framing.UPDATE_MANIFEST, framing.UPDATE_DATA)
