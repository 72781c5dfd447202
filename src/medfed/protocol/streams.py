"""Models as streams of framed chunk messages: a manifest first, then raw data.

Both directions use :mod:`medfed.protocol.framing`, so a megabyte of model is copied once on the
way out and once on the way in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import numpy.typing as npt

from medfed.errors import ProtocolError
from medfed.protocol import framing, tensors
from medfed.protocol.v1 import medfed_pb2 as pb


def model_frames(
    manifest: pb.ModelManifest,
    weights: Mapping[str, npt.NDArray[np.generic]],
    manifest_field: int = framing.MODEL_MANIFEST,
    data_field: int = framing.MODEL_DATA,
) -> Iterator[bytes]:
    yield framing.frame_message(manifest_field, manifest)
    for piece in tensors.chunk(tensors.iter_data(weights)):
        yield framing.frame(data_field, piece)


def receive_model(frames: Iterator[bytes], sha256: str) -> tensors.Weights:
    """Reassemble a framed model stream and check it is exactly the model asked for (by hash)."""
    first = next(frames, None)
    if first is None:
        raise ProtocolError("model stream is empty")
    field, payload = framing.unframe(first)
    if field != framing.MODEL_MANIFEST:
        raise ProtocolError("model stream did not start with a manifest")
    manifest = tensors.manifest_from_proto(framing.parse_manifest(payload))
    data = bytearray(manifest.total_bytes)
    fill(frames, memoryview(data), framing.MODEL_DATA)
    got = tensors.sha256_of(manifest, [data])
    if got != sha256:
        raise ProtocolError(f"model hash mismatch: asked for {sha256[:12]}…, got {got[:12]}…")
    return tensors.decode(manifest, data)


def fill(frames: Iterator[bytes], target: memoryview, data_field: int) -> None:
    """Copy the data frames of a stream into ``target``, which they must fill exactly."""
    expected, filled = len(target), 0
    for raw in frames:
        field, piece = framing.unframe(raw)
        if field != data_field:
            raise ProtocolError("only data chunks may follow the manifest")
        end = filled + len(piece)
        if end > expected:
            raise ProtocolError(f"stream is longer than its manifest's {expected} bytes")
        target[filled:end] = piece
        filled = end
    if filled != expected:
        raise ProtocolError(f"stream ended after {filled} of {expected} bytes")
