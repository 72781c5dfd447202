"""Method tables for the coordinator's two gRPC services.

Written out rather than taken from the generated ``add_*_to_server`` so that the bulk-data methods
can pass framed chunk bytes straight through (see :mod:`medfed.protocol.framing`) while every
other method keeps protobuf (de)serialization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from medfed.coordinator.servicer import AdminServicer, NodeServicer
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.transport.methods import service_name

_RAW = None  # bytes in, bytes out: framing is done by the servicer


def _messages(
    request: type[Any], response: type[Any]
) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    return request.FromString, response.SerializeToString


def node_service(servicer: NodeServicer) -> grpc.GenericRpcHandler[Any, Any]:
    unary, stream_in, stream_out = (
        grpc.unary_unary_rpc_method_handler,
        grpc.stream_unary_rpc_method_handler,
        grpc.unary_stream_rpc_method_handler,
    )
    return grpc.method_handlers_generic_handler(
        service_name("NodeService"),
        {
            "Heartbeat": unary(
                servicer.Heartbeat, *_messages(pb.HeartbeatRequest, pb.HeartbeatReply)
            ),
            "PullTask": unary(servicer.PullTask, *_messages(pb.PullTaskRequest, pb.PullTaskReply)),
            "FetchModel": stream_out(servicer.FetchModel, pb.FetchModelRequest.FromString, _RAW),
            "SubmitUpdate": stream_in(
                servicer.SubmitUpdate, _RAW, pb.SubmitReply.SerializeToString
            ),
            "RefuseTask": unary(servicer.RefuseTask, *_messages(pb.TaskRefusal, pb.Ack)),
            "SubmitSecAgg": unary(
                servicer.SubmitSecAgg, *_messages(pb.SecAggAnswer, pb.SubmitReply)
            ),
        },
    )


def admin_service(servicer: AdminServicer) -> grpc.GenericRpcHandler[Any, Any]:
    unary, stream_in, stream_out = (
        grpc.unary_unary_rpc_method_handler,
        grpc.stream_unary_rpc_method_handler,
        grpc.unary_stream_rpc_method_handler,
    )
    return grpc.method_handlers_generic_handler(
        service_name("AdminService"),
        {
            "SubmitStudy": stream_in(
                servicer.SubmitStudy, *_messages(pb.SubmitStudyChunk, pb.StudyRef)
            ),
            "GetStudy": unary(servicer.GetStudy, *_messages(pb.StudyRef, pb.StudyStatus)),
            "ListStudies": unary(servicer.ListStudies, *_messages(pb.Empty, pb.StudyList)),
            "WatchStudy": stream_out(servicer.WatchStudy, *_messages(pb.StudyRef, pb.StudyStatus)),
            "ListNodes": unary(servicer.ListNodes, *_messages(pb.Empty, pb.NodeList)),
            "DownloadModel": stream_out(
                servicer.DownloadModel, pb.FetchModelRequest.FromString, _RAW
            ),
            "CancelStudy": unary(
                servicer.CancelStudy, *_messages(pb.CancelStudyRequest, pb.StudyStatus)
            ),
        },
    )
