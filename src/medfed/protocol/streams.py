"""Reassembling a streamed model: manifest first, then data, checked against the hash asked for."""

from __future__ import annotations

from collections.abc import Iterator

from medfed.errors import ProtocolError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb


def receive_model(stream: Iterator[pb.ModelChunk], sha256: str) -> tensors.Weights:
    first = next(stream, None)
    if first is None or first.WhichOneof("part") != "manifest":
        raise ProtocolError("model stream did not start with a manifest")
    manifest = tensors.manifest_from_proto(first.manifest)
    data = bytearray(manifest.total_bytes)
    view, filled = memoryview(data), 0
    for message in stream:
        piece = message.data
        if filled + len(piece) > len(data):
            raise ProtocolError("model stream is longer than its manifest")
        view[filled : filled + len(piece)] = piece
        filled += len(piece)
    if filled != len(data):
        raise ProtocolError(f"model stream ended after {filled} of {len(data)} bytes")
    got = tensors.sha256_of(manifest, [data])
    if got != sha256:
        raise ProtocolError(f"model hash mismatch: asked for {sha256[:12]}…, got {got[:12]}…")
    return tensors.decode(manifest, data)
