from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.errors import NonFiniteError, ProtocolError
from medfed.protocol import framing, tensors
from medfed.protocol.streams import model_frames, receive_model
from medfed.protocol.v1 import medfed_pb2 as pb

DTYPES = [np.dtype(name) for name in tensors.SUPPORTED_DTYPES]


def _roundtrip(weights: dict[str, np.ndarray], size: int = framing.CHUNK_BYTES) -> tensors.Weights:
    message, chunks = tensors.encode_model(weights, size)
    data = b"".join(chunks)
    return tensors.decode(tensors.manifest_from_proto(message), data)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_round_trips_bit_exact(dtype: np.dtype) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)

    out = _roundtrip({"t": array})

    assert out["t"].dtype == dtype
    assert out["t"].shape == array.shape
    assert out["t"].tobytes() == array.tobytes()


@given(
    arrays=st.lists(
        hnp.arrays(
            dtype=st.sampled_from(DTYPES),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
        ),
        min_size=1,
        max_size=4,
    ),
    chunk=st.integers(min_value=1, max_value=64),
)
@settings(max_examples=60, deadline=None)
def test_any_model_round_trips_with_any_chunk_size(arrays: list[np.ndarray], chunk: int) -> None:
    weights = {f"t{i}": a for i, a in enumerate(arrays)}

    out = _roundtrip(weights, chunk)

    assert list(out) == list(weights)
    for name, array in weights.items():
        assert out[name].dtype == array.dtype
        assert out[name].shape == array.shape
        assert out[name].tobytes() == array.tobytes()


def test_big_endian_input_travels_little_endian() -> None:
    big = np.arange(6, dtype=">f4")

    out = _roundtrip({"b": big})

    assert out["b"].dtype.byteorder in ("<", "=")
    assert np.array_equal(out["b"], big)


def test_hash_depends_on_values_names_and_shapes() -> None:
    base = {"w": np.zeros((2, 3), dtype=np.float32)}
    variants = [
        {"w": np.zeros((3, 2), dtype=np.float32)},
        {"v": np.zeros((2, 3), dtype=np.float32)},
        {"w": np.zeros((2, 3), dtype=np.float64)},
        {"w": np.full((2, 3), 1e-30, dtype=np.float32)},
    ]
    digest = tensors.weights_sha256(base)
    assert all(tensors.weights_sha256(v) != digest for v in variants)
    assert tensors.weights_sha256({"w": np.zeros((2, 3), dtype=np.float32)}) == digest


def test_manifest_with_wrong_total_is_refused() -> None:
    message, _ = tensors.encode_model({"w": np.zeros(4, dtype=np.float32)})
    message.total_bytes = 1

    with pytest.raises(ProtocolError, match="manifest says 1 bytes"):
        tensors.manifest_from_proto(message)


def test_manifest_over_the_cap_is_refused() -> None:
    message, _ = tensors.encode_model({"w": np.zeros(1000, dtype=np.float32)})

    with pytest.raises(ProtocolError, match="exceeds the cap"):
        tensors.manifest_from_proto(message, max_bytes=100)


@pytest.mark.parametrize(
    "spec",
    [
        pb.TensorSpec(name="", dtype=pb.DTYPE_FLOAT32, shape=[1]),
        pb.TensorSpec(name="w", dtype=99, shape=[1]),  # type: ignore[arg-type]
        pb.TensorSpec(name="w", dtype=pb.DTYPE_FLOAT32, shape=[-1]),
        pb.TensorSpec(name="w", dtype=pb.DTYPE_FLOAT32, shape=[1] * 9),
    ],
)
def test_malformed_tensor_specs_are_refused(spec: pb.TensorSpec) -> None:
    with pytest.raises(ProtocolError):
        tensors.manifest_from_proto(pb.ModelManifest(tensors=[spec], total_bytes=4))


def test_data_of_the_wrong_length_is_refused() -> None:
    manifest = tensors.manifest_of({"w": np.zeros(4, dtype=np.float32)})

    with pytest.raises(ProtocolError, match="expected 16 data bytes, got 15"):
        tensors.decode(manifest, b"\0" * 15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_detected(bad: float) -> None:
    with pytest.raises(NonFiniteError, match="'w'"):
        tensors.check_finite({"w": np.array([0.0, bad], dtype=np.float32)})


def test_integer_tensors_are_always_finite() -> None:
    tensors.check_finite({"i": np.array([1, 2], dtype=np.int64)})


def test_layout_mismatch_names_the_tensor() -> None:
    expected = tensors.manifest_of({"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)})
    got = tensors.manifest_of({"a": np.zeros(4, np.float32), "b": np.zeros(2, np.float32)})

    with pytest.raises(ProtocolError, match=r"tensor 'a': got float32\[4\], expected float32\[3\]"):
        tensors.same_layout(expected, got)


def test_received_stream_is_checked_against_the_requested_hash() -> None:
    weights = {"w": np.arange(300_000, dtype=np.float32)}
    message, _ = tensors.encode_model(weights)
    frames = list(model_frames(message, weights))

    assert np.array_equal(receive_model(iter(frames), message.sha256)["w"], weights["w"])
    with pytest.raises(ProtocolError, match="hash mismatch"):
        receive_model(iter(frames), "0" * 64)
    with pytest.raises(ProtocolError, match="ended after"):
        receive_model(iter(frames[:-1]), message.sha256)
    with pytest.raises(ProtocolError, match="did not start with a manifest"):
        receive_model(iter(frames[1:]), message.sha256)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [([2**32, 2**32], pb.DTYPE_FLOAT32), ([2**62, 2], pb.DTYPE_UINT8), ([2**61, 4], pb.DTYPE_INT8)],
)
def test_sizes_that_overflow_int64_are_refused_not_wrapped(shape: list[int], dtype: int) -> None:
    spec = pb.TensorSpec(name="w", dtype=dtype, shape=shape)  # type: ignore[arg-type]

    with pytest.raises(ProtocolError, match="beyond int64"):
        tensors.manifest_from_proto(pb.ModelManifest(tensors=[spec], total_bytes=0))


def test_tensor_size_is_exact() -> None:
    assert tensors.TensorSpec("w", "float32", (2**32, 2**32)).nbytes == 2**66
    assert tensors.TensorSpec("w", "float32", ()).size == 1
