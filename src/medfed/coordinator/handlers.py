"""Method tables for the coordinator's two gRPC services, each method behind the :class:`Guard`.

Written out rather than taken from the generated ``add_*_to_server`` because every method takes
raw bytes: the guard checks the caller's certificate (revocation included), its share of open
calls and the request's size *before* anything is parsed (see :mod:`medfed.transport.guard`).
Bulk-data methods also pass framed chunk bytes straight through (:mod:`medfed.protocol.framing`).

Each rule says who may call, which share of the caller's calls it counts against
(:mod:`medfed.transport.limits`) and the largest request it takes: no node can announce more than
its method's cap, and the dataset names it announces are names a node's registry could hold.
"""

from __future__ import annotations

from typing import Any

import grpc

from medfed.coordinator.servicer import AdminServicer, NodeServicer
from medfed.errors import ProtocolError
from medfed.pki.identity import NAME_PATTERN, Role
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.transport.grpc_factory import MAX_MESSAGE_BYTES
from medfed.transport.guard import Guard, MethodRule
from medfed.transport.limits import CallKind
from medfed.transport.methods import service_name

KIB = 1024
MAX_HEARTBEAT_BYTES = 256 * KIB
"""Room for a thousand datasets with their sizes; the 4 MiB heartbeat of an attack is refused."""
MAX_VERSION_CHARS = 64


def check_heartbeat(request: pb.HeartbeatRequest) -> None:
    """Dataset names must be names a node's registry accepts (at most 63 characters)."""
    for name in request.datasets:
        if not NAME_PATTERN.fullmatch(name):
            raise ProtocolError(
                f"announced dataset name {name[:80]!r} is not a dataset name "
                f"({NAME_PATTERN.pattern}: lower-case letters, digits, '_', '.', '-')"
            )
    if len(request.agent_version) > MAX_VERSION_CHARS:
        raise ProtocolError(f"agent version longer than {MAX_VERSION_CHARS} characters")


def _node(kind: CallKind, max_bytes: int, **extra: Any) -> MethodRule:
    return MethodRule(Role.NODE, kind, max_bytes, **extra)


def _admin(max_bytes: int = 64 * KIB, **extra: Any) -> MethodRule:
    return MethodRule(Role.ADMIN, CallKind.ADMIN, max_bytes, **extra)


def node_service(servicer: NodeServicer, guard: Guard) -> grpc.GenericRpcHandler[Any, Any]:
    s = servicer
    return grpc.method_handlers_generic_handler(
        service_name("NodeService"),
        {
            "Heartbeat": guard.unary(
                "Heartbeat", s.Heartbeat, pb.HeartbeatRequest.FromString,
                pb.HeartbeatReply.SerializeToString,
                _node(CallKind.SHORT, MAX_HEARTBEAT_BYTES, check=check_heartbeat),
            ),
            "PullTask": guard.unary(
                "PullTask", s.PullTask, pb.PullTaskRequest.FromString,
                pb.PullTaskReply.SerializeToString, _node(CallKind.POLL, KIB),
            ),
            "FetchModel": guard.stream_out(
                "FetchModel", s.FetchModel, pb.FetchModelRequest.FromString, None,
                _node(CallKind.DOWNLOAD, KIB),
            ),
            "SubmitUpdate": guard.stream_in(
                "SubmitUpdate", s.SubmitUpdate, None, pb.SubmitReply.SerializeToString,
                _node(CallKind.UPLOAD, MAX_MESSAGE_BYTES),
            ),
            "RefuseTask": guard.unary(
                "RefuseTask", s.RefuseTask, pb.TaskRefusal.FromString, pb.Ack.SerializeToString,
                _node(CallKind.SHORT, 64 * KIB),
            ),
            "SubmitSecAgg": guard.unary(
                "SubmitSecAgg", s.SubmitSecAgg, pb.SecAggAnswer.FromString,
                pb.SubmitReply.SerializeToString, _node(CallKind.SHORT, MAX_MESSAGE_BYTES),
            ),
            "GetLedger": guard.unary(
                "GetLedger", s.GetLedger, pb.LedgerRequest.FromString,
                pb.LedgerPage.SerializeToString, _node(CallKind.SHORT, KIB),
            ),
        },
    )  # fmt: skip


def admin_service(servicer: AdminServicer, guard: Guard) -> grpc.GenericRpcHandler[Any, Any]:
    s = servicer
    status = pb.StudyStatus.SerializeToString
    return grpc.method_handlers_generic_handler(
        service_name("AdminService"),
        {
            "SubmitStudy": guard.stream_in(
                "SubmitStudy", s.SubmitStudy, pb.SubmitStudyChunk.FromString,
                pb.StudyRef.SerializeToString, _admin(MAX_MESSAGE_BYTES),
            ),
            "GetStudy": guard.unary(
                "GetStudy", s.GetStudy, pb.StudyRef.FromString, status, _admin()
            ),
            "ListStudies": guard.unary(
                "ListStudies", s.ListStudies, pb.PageRequest.FromString,
                pb.StudyList.SerializeToString, _admin(),
            ),
            "WatchStudy": guard.stream_out(
                "WatchStudy", s.WatchStudy, pb.StudyRef.FromString, status, _admin(watch=False)
            ),
            "ListNodes": guard.unary(
                "ListNodes", s.ListNodes, pb.PageRequest.FromString,
                pb.NodeList.SerializeToString, _admin(),
            ),
            "DownloadModel": guard.stream_out(
                "DownloadModel", s.DownloadModel, pb.FetchModelRequest.FromString, None, _admin()
            ),
            "CancelStudy": guard.unary(
                "CancelStudy", s.CancelStudy, pb.CancelStudyRequest.FromString, status, _admin()
            ),
            "GetLedger": guard.unary(
                "GetLedger", s.GetLedger, pb.LedgerRequest.FromString,
                pb.LedgerPage.SerializeToString, _admin(),
            ),
            "Govern": guard.unary(
                "Govern", s.Govern, pb.GovernRequest.FromString,
                pb.GovernReply.SerializeToString, _admin(),
            ),
        },
    )  # fmt: skip
