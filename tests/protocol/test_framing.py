from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfed.errors import ProtocolError
from medfed.protocol import framing
from medfed.protocol.v1 import medfed_pb2 as pb


@given(st.binary(max_size=5000))
def test_data_frames_are_byte_identical_to_protobuf(payload: bytes) -> None:
    assert (
        framing.frame(framing.MODEL_DATA, payload)
        == pb.ModelChunk(data=payload).SerializeToString()
    )
    assert (
        framing.frame(framing.UPDATE_DATA, payload)
        == pb.UpdateChunk(data=payload).SerializeToString()
    )


@given(st.binary(max_size=300_000))
def test_protobuf_serialized_chunks_unframe(payload: bytes) -> None:
    field, view = framing.unframe(pb.ModelChunk(data=payload).SerializeToString())

    assert field == framing.MODEL_DATA
    assert bytes(view) == payload


def test_manifest_and_header_round_trip_through_frames() -> None:
    manifest = pb.ModelManifest(
        tensors=[pb.TensorSpec(name="w", dtype=pb.DTYPE_FLOAT32, shape=[3])], total_bytes=12
    )
    header = pb.UpdateHeader(task_id="t", study_id="s", round=2, num_examples=5)

    field, payload = framing.unframe(framing.frame_message(framing.MODEL_MANIFEST, manifest))
    assert field == framing.MODEL_MANIFEST
    assert framing.parse_manifest(payload) == manifest
    parsed = pb.ModelChunk.FromString(framing.frame_message(framing.MODEL_MANIFEST, manifest))
    assert parsed.manifest == manifest

    field, payload = framing.unframe(framing.frame_message(framing.UPDATE_HEADER, header))
    assert field == framing.UPDATE_HEADER
    assert framing.parse_header(payload) == header


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x12",  # tag, no length
        b"\x12\x05abc",  # shorter than announced
        b"\x12\x01abc",  # trailing bytes: a second field
        b"\x10\x01",  # varint wire type
        b"\x12" + b"\xff" * 11,  # overlong varint
    ],
)
def test_anything_but_one_exact_field_is_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        framing.unframe(raw)


def test_garbage_manifest_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="malformed manifest"):
        framing.parse_manifest(memoryview(b"\xff\xff\xff"))
