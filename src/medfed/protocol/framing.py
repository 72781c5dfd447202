"""The bulk-data fast path: chunk messages framed and unframed without a protobuf round trip.

``ModelChunk``, ``UpdateChunk`` and ``SubmitStudyChunk`` are each a ``oneof`` of length-delimited
fields, so one wire message is exactly ``tag, length, payload``. Building that by hand saves the
three copies that message construction, serialization and parsing would make of every megabyte of
a model (profiling a 40 MB fetch: memcpy, not TLS, dominated), and lets a receiver copy the payload
once, straight into its buffer. Only this strict subset is accepted: a message that is not a single
length-delimited field filling it exactly is refused, never guessed at. Small parts (manifest,
header) are still parsed by protobuf from the payload. The encoding is protobuf's own, so a peer
using the generated classes interoperates (tests check both directions).
"""

from __future__ import annotations

from medfed.errors import ProtocolError
from medfed.protocol.v1 import medfed_pb2 as pb

CHUNK_BYTES = 1 << 20
"""Data chunk size on the wire: small enough for a tight per-message cap, large enough to stream
at memory speed."""

_LENGTH_DELIMITED = 2
_MAX_VARINT_BYTES = 10


def _field(message: type[pb.ModelChunk | pb.UpdateChunk], name: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[name].number)


MODEL_MANIFEST = _field(pb.ModelChunk, "manifest")
MODEL_DATA = _field(pb.ModelChunk, "data")
UPDATE_HEADER = _field(pb.UpdateChunk, "header")
UPDATE_MANIFEST = _field(pb.UpdateChunk, "manifest")
UPDATE_DATA = _field(pb.UpdateChunk, "data")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(raw: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(len(raw), pos + _MAX_VARINT_BYTES)):
        byte = raw[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise ProtocolError("truncated or overlong varint in a chunk message")


def frame(field: int, payload: bytes | memoryview) -> bytes:
    """One message holding ``payload`` as field ``field`` (a single copy of the payload)."""
    header = _varint((field << 3) | _LENGTH_DELIMITED) + _varint(len(payload))
    return b"".join((header, payload))


def frame_message(field: int, message: pb.ModelManifest | pb.UpdateHeader) -> bytes:
    return frame(field, message.SerializeToString())


def unframe(raw: bytes) -> tuple[int, memoryview]:
    """Field number and a zero-copy view of the payload of a single-field message."""
    key, pos = _read_varint(raw, 0)
    if key & 0x7 != _LENGTH_DELIMITED:
        raise ProtocolError(f"chunk field has wire type {key & 0x7}, expected length-delimited")
    length, pos = _read_varint(raw, pos)
    if pos + length != len(raw):
        raise ProtocolError(
            f"chunk message of {len(raw)} bytes does not hold exactly one field of {length} bytes"
        )
    return key >> 3, memoryview(raw)[pos:]


def parse_manifest(payload: memoryview) -> pb.ModelManifest:
    try:
        return pb.ModelManifest.FromString(bytes(payload))
    except Exception as exc:  # protobuf's DecodeError, without importing its private module
        raise ProtocolError(f"malformed manifest: {exc}") from exc


def parse_header(payload: memoryview) -> pb.UpdateHeader:
    try:
        return pb.UpdateHeader.FromString(bytes(payload))
    except Exception as exc:
        raise ProtocolError(f"malformed update header: {exc}") from exc
