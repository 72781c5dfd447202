from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from medfed.coordinator.spec import StudySpec, spec_to_proto
from medfed.coordinator.submission import check_tensor_names, read_submission
from medfed.errors import ProtocolError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb

SPEC = StudySpec(
    name="s", dataset="heart_disease", features=("a",), label="y", plan="passthrough",
    plan_version="1", rounds=1,
)  # fmt: skip


def _chunks(manifest: pb.ModelManifest, data: bytes = b"") -> Iterator[pb.SubmitStudyChunk]:
    yield pb.SubmitStudyChunk(spec=spec_to_proto(SPEC))
    yield pb.SubmitStudyChunk(manifest=manifest)
    if data:
        yield pb.SubmitStudyChunk(data=data)


def _submission(weights: tensors.Weights) -> Iterator[pb.SubmitStudyChunk]:
    manifest, data = tensors.encode_model(weights)
    return _chunks(manifest, b"".join(bytes(d) for d in data))


def test_a_plain_model_is_read() -> None:
    spec, weights, he = read_submission(_submission({"w": np.ones(3, np.float32)}))

    assert spec == SPEC and he == b""
    assert weights["w"].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("__metadata__", "reserved by the safetensors format"),
        ("layer/weight", "contains '/'"),
    ],
)
def test_reserved_tensor_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as caught:
        read_submission(_submission({"ok": np.zeros(1, np.float32), name: np.zeros(1)}))
    assert repr(name) in str(caught.value)


def test_a_shape_whose_size_overflows_int64_is_refused() -> None:
    huge = pb.TensorSpec(name="w", dtype=pb.DTYPE_FLOAT32, shape=[2**32, 2**32])
    manifest = pb.ModelManifest(tensors=[huge], total_bytes=0, sha256="0" * 64)

    with pytest.raises(ProtocolError, match="beyond int64"):
        read_submission(_chunks(manifest))


def test_check_tensor_names_lists_every_problem() -> None:
    with pytest.raises(ProtocolError) as caught:
        check_tensor_names(["a/b", "fine", "__metadata__"])
    assert "'a/b'" in str(caught.value) and "'__metadata__'" in str(caught.value)
    check_tensor_names(["fine", "also.fine"])
