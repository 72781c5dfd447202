"""gRPC method paths of the medfed.v1 services, for calls that bypass the generated stubs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from medfed.protocol.v1 import medfed_pb2 as pb


def service_name(name: str) -> str:
    return str(pb.DESCRIPTOR.services_by_name[name].full_name)


def method_path(service: str, method: str) -> str:
    """The HTTP/2 path clients call, e.g. ``/medfed.v1.NodeService/FetchModel``."""
    return f"/{service_name(service)}/{method}"


def model_download(channel: Any, service: str, method: str) -> Callable[..., Iterator[bytes]]:
    """A ``FetchModelRequest -> stream of framed ModelChunk bytes`` call (FetchModel and
    DownloadModel): responses stay raw for :func:`medfed.protocol.streams.receive_model`."""
    call: Callable[..., Iterator[bytes]] = channel.unary_stream(
        method_path(service, method),
        request_serializer=pb.FetchModelRequest.SerializeToString,
        response_deserializer=None,
    )
    return call
