import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.compression.codec import (
    CompressionConfig,
    decode,
    encode,
    wire_bytes,
    wire_manifest,
)
from medfed.errors import ConfigError, NonFiniteError, ProtocolError
from medfed.protocol.tensors import (
    Manifest,
    TensorSpec,
    manifest_from_proto,
    manifest_of,
    manifest_to_proto,
)

Q8 = CompressionConfig("q8")
TINY = 2.0**-149


def rng(seed=0):
    return np.random.default_rng(seed)


def small_model(seed=0, offset=0.0):
    r = rng(seed)
    return {
        "conv.weight": (r.normal(size=(4, 3)) + offset).astype(np.float32),
        "bn.num_batches_tracked": np.array(seed + 10, dtype=np.int64),
        "fc.bias": (r.normal(size=5) + offset).astype(np.float32),
    }


def delta32(new, old):
    return (new.astype(np.float64) - old.astype(np.float64)).astype(np.float32)


def reference_decoded_delta(config, wire, name, shape):
    """The delta a wire update carries, read with plain NumPy."""
    if config.kind == "q8":
        lo, scale = wire[f"q8/{name}/range"].astype(np.float64)
        codes = wire[f"q8/{name}/codes"].astype(np.float64)
        return (lo + codes * scale).astype(np.float32)
    out = np.zeros(math.prod(shape), dtype=np.float32)
    out[wire[f"topk/{name}/index"]] = wire[f"topk/{name}/value"]
    return out.reshape(shape)


# --- config and layout -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "zip"},
        {"kind": "topk", "topk_ratio": 0.0},
        {"kind": "topk", "topk_ratio": 1.5},
        {"kind": "topk", "topk_ratio": float("nan")},
        {"kind": "topk", "topk_ratio": True},
        {"kind": "topk", "topk_ratio": "0.1"},
        {"kind": "q8", "error_feedback": "yes"},
    ],
)
def test_config_refuses_bad_values(kwargs):
    with pytest.raises(ConfigError):
        CompressionConfig(**kwargs)


def test_wire_manifest_known_layout():
    model = manifest_of(small_model())
    assert wire_manifest(CompressionConfig(), model) is model
    assert wire_manifest(Q8, model) == Manifest(
        (
            TensorSpec("q8/conv.weight/codes", "uint8", (4, 3)),
            TensorSpec("q8/conv.weight/range", "float32", (2,)),
            TensorSpec("bn.num_batches_tracked", "int64", ()),
            TensorSpec("q8/fc.bias/codes", "uint8", (5,)),
            TensorSpec("q8/fc.bias/range", "float32", (2,)),
        )
    )
    # k = max(1, ceil(0.25 * size)): 3 of 12, 2 of 5
    assert wire_manifest(CompressionConfig("topk", topk_ratio=0.25), model) == Manifest(
        (
            TensorSpec("topk/conv.weight/index", "int32", (3,)),
            TensorSpec("topk/conv.weight/value", "float32", (3,)),
            TensorSpec("bn.num_batches_tracked", "int64", ()),
            TensorSpec("topk/fc.bias/index", "int32", (2,)),
            TensorSpec("topk/fc.bias/value", "float32", (2,)),
        )
    )


@pytest.mark.parametrize("kind", ["q8", "topk"])
def test_wire_names_survive_the_protobuf_manifest(kind):
    layout = wire_manifest(CompressionConfig(kind), manifest_of(small_model()))
    proto = manifest_to_proto(layout)
    assert manifest_from_proto(proto, max_bytes=proto.total_bytes) == layout


def test_model_names_that_collide_with_wire_names_are_refused():
    model = manifest_of({"x": np.zeros(3, np.float32), "q8/x/codes": np.zeros(3, np.uint8)})
    with pytest.raises(ProtocolError, match="collide"):
        wire_manifest(Q8, model)


@st.composite
def models(draw):
    n = draw(st.integers(1, 4))
    global_, new = {}, {}
    for i in range(n):
        dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int64, np.bool_]))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        if np.dtype(dtype).kind == "f":
            elements = st.floats(-100, 100, width=16)
        elif dtype == np.int64:
            elements = st.integers(-1000, 1000)
        else:
            elements = st.booleans()
        global_[f"layer{i}.p"] = draw(hnp.arrays(dtype, shape, elements=elements))
        new[f"layer{i}.p"] = draw(hnp.arrays(dtype, shape, elements=elements))
    return new, global_


@settings(max_examples=120, deadline=None)
@given(
    models(),
    st.sampled_from(["none", "q8", "topk"]),
    st.floats(1e-3, 1.0),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_encode_produces_the_wire_manifest_and_decode_the_model_layout(
    case, kind, ratio, feedback, seed
):
    new, global_ = case
    config = CompressionConfig(kind, topk_ratio=ratio, error_feedback=feedback)
    wire, residual = encode(config, new, global_, None, rng(seed))
    assert manifest_of(wire) == wire_manifest(config, manifest_of(global_))
    assert sum(a.nbytes for a in wire.values()) == wire_bytes(config, manifest_of(global_))
    dense = decode(config, wire, global_)
    assert manifest_of(dense) == manifest_of(global_)
    for name, array in new.items():
        if array.dtype.kind != "f":  # integer and bool tensors travel whole
            np.testing.assert_array_equal(dense[name], array)
    floats = {n: a for n, a in global_.items() if a.dtype.kind == "f"}
    expected = {n: np.zeros(a.shape, np.float32) for n, a in floats.items()}
    assert manifest_of(residual) == (
        manifest_of(expected) if kind != "none" and feedback else Manifest(())
    )


# --- round trips -------------------------------------------------------------------------


@st.composite
def float32_pairs(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8))
    size = float(np.float32(draw(st.sampled_from([1e-3, 1.0, 1e4]))))
    elements = st.floats(-size, size, width=32).map(lambda x: float(np.float32(x)))
    new = draw(hnp.arrays(np.float32, shape, elements=elements))
    old = draw(hnp.arrays(np.float32, shape, elements=elements))
    return new, old


@settings(max_examples=150, deadline=None)
@given(float32_pairs(), st.integers(0, 2**32 - 1))
def test_q8_round_trip_is_within_one_step(pair, seed):
    new, old = pair
    dense = decode(Q8, encode(Q8, {"w": new}, {"w": old}, None, rng(seed))[0], {"w": old})["w"]
    d = delta32(new, old).astype(np.float64)
    step = (d.max() - d.min()) / 255
    # one quantization step, plus float32 rounding of the delta, the levels and the sum
    magnitude = np.abs(new) + np.abs(old) + np.abs(d)
    bound = step * (1 + 2**-20) + 2**-22 * magnitude + TINY
    assert np.all(np.abs(dense.astype(np.float64) - new) <= bound)


def integer_valued(r, shape, high=1 << 20):
    return r.integers(-high, high, size=shape).astype(np.float32)


def test_topk_with_ratio_one_is_exact():
    # integer-valued float32 below 2**24: the delta and the sum are exact in float32
    r = rng(3)
    old = {"a": integer_valued(r, (6, 7)), "b": integer_valued(r, (3,))}
    new = {"a": integer_valued(r, (6, 7)), "b": integer_valued(r, (3,))}
    config = CompressionConfig("topk", topk_ratio=1.0)
    dense = decode(config, encode(config, new, old, None, rng())[0], old)
    for name, value in new.items():
        np.testing.assert_array_equal(dense[name], value)


def test_topk_sends_exactly_the_largest_coordinates():
    r = rng(4)
    old = integer_valued(r, (5, 10))
    delta = (r.permutation(50) + 1) * r.choice([-1, 1], size=50)  # distinct magnitudes
    new = old + delta.reshape(5, 10).astype(np.float32)
    config = CompressionConfig("topk", topk_ratio=0.1)  # k = 5
    dense = decode(config, encode(config, {"w": new}, {"w": old}, None, rng())[0], {"w": old})
    largest = np.argsort(-np.abs(delta))[:5]
    expected = old.reshape(-1).copy()
    expected[largest] = new.reshape(-1)[largest]
    np.testing.assert_array_equal(dense["w"].reshape(-1), expected)


def test_decode_keeps_each_tensors_dtype():
    old = {"h": np.ones(4, np.float16), "d": np.ones(4, np.float64), "n": np.arange(2)}
    new = {"h": np.full(4, 2, np.float16), "d": np.full(4, 3.0), "n": np.arange(2) + 5}
    for config in (Q8, CompressionConfig("topk", topk_ratio=1.0)):
        dense = decode(config, encode(config, new, old, None, rng())[0], old)
        assert {n: a.dtype for n, a in dense.items()} == {n: a.dtype for n, a in old.items()}
        for name, value in new.items():
            np.testing.assert_array_equal(dense[name], value)


def test_none_sends_the_weights_themselves():
    new, old = small_model(1), small_model(2)
    config = CompressionConfig()
    wire, residual = encode(config, new, old, None, rng())
    assert residual == {} and wire.keys() == new.keys()
    assert all(wire[n] is new[n] for n in new)
    dense = decode(config, wire, old)
    assert all(dense[n] is new[n] for n in new)


def test_same_seed_same_update():
    new, old = small_model(1), small_model(2)
    a, _ = encode(Q8, new, old, None, rng(9))
    b, _ = encode(Q8, new, old, None, rng(9))
    assert all(np.array_equal(a[n], b[n]) for n in a)


# --- error feedback ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["q8", "topk"])
def test_residual_identity(kind):
    # delta + old residual == decoded delta + new residual, two rounds in a row
    config = CompressionConfig(kind, topk_ratio=0.2)
    old = small_model(0)
    residual = None
    for round_, seed in enumerate((1, 2, 3)):
        new = small_model(seed, offset=0.1 * seed)
        wire, kept = encode(config, new, old, residual, rng(round_))
        for name in ("conv.weight", "fc.bias"):
            carried = np.zeros(new[name].shape, np.float32) if residual is None else residual[name]
            target = delta32(new[name], old[name]) + carried  # float32, as the node adds it
            decoded = reference_decoded_delta(config, wire, name, new[name].shape)
            assert kept[name].dtype == np.float32
            total = decoded.astype(np.float64) + kept[name]
            if kind == "topk":  # each coordinate is sent or kept whole: exact
                np.testing.assert_array_equal(total, target)
            else:  # the residual is one float32 subtraction: half an ulp of it
                bound = 2**-24 * np.abs(kept[name]) + TINY
                assert np.all(np.abs(total - target) <= bound)
        residual = kept


def test_topk_error_feedback_delivers_the_whole_delta_over_rounds():
    # Top-k keeps the k largest squares, so ||x - topk(x)||² <= (1 - δ)||x||² with δ = k/n.
    # The residual e obeys e' = (e + g) - topk(e + g), hence ||e'|| <= sqrt(1-δ)(||e|| + ||g||)
    # and by induction ||e_t|| <= 2||g||/δ. The decoded deltas telescope: Σ_t decoded = T g - e_T,
    # so their mean is within 2||g||/(δT) of g (Stich et al., 2018, Lemma 3.2 in spirit).
    n, ratio, rounds = 200, 0.05, 400
    g = rng(5).normal(size=n).astype(np.float32)
    old = {"w": np.zeros(n, np.float32)}
    new = {"w": g}
    bound = 2 * np.linalg.norm(g) / ratio
    for feedback in (True, False):
        config = CompressionConfig("topk", topk_ratio=ratio, error_feedback=feedback)
        total = np.zeros(n)
        residual = None
        for t in range(1, rounds + 1):
            wire, residual = encode(config, new, old, residual, rng())
            total += reference_decoded_delta(config, wire, "w", (n,))
            gap = np.linalg.norm(t * g.astype(np.float64) - total)
            if feedback:
                assert gap <= bound * (1 + 1e-5)
                np.testing.assert_allclose(total + residual["w"], t * g, rtol=0, atol=1e-3)
        if feedback:
            assert np.linalg.norm(total / rounds - g) <= 0.1 * np.linalg.norm(g) + 1e-6
        else:  # without memory the unsent 90% of coordinates are lost for good
            assert residual == {}
            assert np.linalg.norm(total / rounds - g) > 0.5 * np.linalg.norm(g)


def test_residual_of_another_model_is_refused():
    new, old = small_model(1), small_model(2)
    with pytest.raises(ProtocolError, match="residual"):
        encode(Q8, new, old, {"conv.weight": np.zeros((4, 3), np.float32)}, rng())
    with pytest.raises(ProtocolError, match="residual"):
        bad = {"conv.weight": np.zeros((3, 4), np.float32), "fc.bias": np.zeros(5, np.float32)}
        encode(Q8, new, old, bad, rng())


def test_without_feedback_the_residual_is_ignored():
    new, old = small_model(1), small_model(2)
    config = CompressionConfig("topk", topk_ratio=0.1, error_feedback=False)
    junk = {"conv.weight": np.full((4, 3), 1e6, np.float32)}
    a, kept = encode(config, new, old, junk, rng())
    b, _ = encode(config, new, old, None, rng())
    assert kept == {} and all(np.array_equal(a[n], b[n]) for n in a)


def test_non_finite_update_is_refused():
    new, old = small_model(1), small_model(2)
    new["fc.bias"][2] = np.nan
    for config in (Q8, CompressionConfig("topk")):
        with pytest.raises(NonFiniteError, match=r"fc\.bias"):
            encode(config, new, old, None, rng())


def test_layout_change_is_refused_by_encode():
    new, old = small_model(1), small_model(2)
    new["fc.bias"] = np.zeros(6, np.float32)
    with pytest.raises(ProtocolError, match=r"fc\.bias"):
        encode(Q8, new, old, None, rng())


# --- size --------------------------------------------------------------------------------


def test_a_million_float_model_compresses_by_formula():
    n = 1_000_000
    model = Manifest((TensorSpec("w", "float32", (1000, 1000)), TensorSpec("n", "int64", ())))
    dense = wire_bytes(CompressionConfig(), model)
    q8 = wire_bytes(Q8, model)
    topk = wire_bytes(CompressionConfig("topk", topk_ratio=0.01), model)
    assert dense == 4 * n + 8
    assert q8 == n + 2 * 4 + 8  # one byte per value, (lo, scale), the int64 whole
    assert topk == 10_000 * (4 + 4) + 8  # k = 1% of n, int32 index + float32 value
    assert 3.99 < dense / q8 <= 4
    assert topk / dense == pytest.approx(2 * 0.01, rel=1e-3)
    # ... and the bytes an actual update carries are those
    r = rng(6)
    old = {"w": r.normal(size=(1000, 1000)).astype(np.float32), "n": np.array(3)}
    new = {"w": old["w"] + 0.01 * r.normal(size=(1000, 1000)).astype(np.float32), "n": np.array(4)}
    for config, size in ((Q8, q8), (CompressionConfig("topk", topk_ratio=0.01), topk)):
        wire, _ = encode(config, new, old, None, r)
        assert sum(a.nbytes for a in wire.values()) == size


# --- malformed updates -------------------------------------------------------------------


def q8_wire():
    new, old = small_model(1), small_model(2)
    return encode(Q8, new, old, None, rng())[0], old


TOPK = CompressionConfig("topk", topk_ratio=0.5)


def topk_wire():
    new, old = small_model(1), small_model(2)
    return encode(TOPK, new, old, None, rng())[0], old


def test_wrong_shape_missing_extra_and_wrong_dtype_are_refused():
    wire, old = q8_wire()
    cases = {
        r"got uint8\[6\], expected uint8\[5\]": {**wire, "q8/fc.bias/codes": np.zeros(6, np.uint8)},
        "missing": {n: a for n, a in wire.items() if n != "q8/fc.bias/range"},
        "unexpected": {**wire, "extra": np.zeros(1, np.float32)},
        r"got int64\[5\], expected uint8\[5\]": {
            **wire,
            "q8/fc.bias/codes": wire["q8/fc.bias/codes"].astype(np.int64),
        },
        "wrong order": dict(reversed(wire.items())),
    }
    for match, bad in cases.items():
        with pytest.raises(ProtocolError, match=match):
            decode(Q8, bad, old)


def test_wire_for_another_model_is_refused():
    wire, _ = q8_wire()
    other = small_model(3)
    other["fc.bias"] = np.zeros(4, np.float32)
    with pytest.raises(ProtocolError, match="expected layout"):
        decode(Q8, wire, other)


@pytest.mark.parametrize(
    ("range_", "error"),
    [
        ([np.nan, 0.1], NonFiniteError),
        ([0.0, np.inf], NonFiniteError),
        ([0.0, -0.1], ProtocolError),
        ([3e38, 3e37], NonFiniteError),
    ],
)
def test_impossible_q8_range_is_refused(range_, error):
    wire, old = q8_wire()
    wire["q8/conv.weight/range"] = np.array(range_, np.float32)
    with pytest.raises(error, match=r"conv\.weight"):
        decode(Q8, wire, old)


@pytest.mark.parametrize(
    ("index", "match"),
    [
        ([0, 2, 12, 5, 7, 9], "strictly increasing"),
        ([0, 2, 4, 5, 7, 12], "out of range"),
        ([0, 2, 2, 5, 7, 9], "strictly increasing"),
        ([-1, 2, 4, 5, 7, 9], "out of range"),
    ],
)
def test_bad_topk_index_is_refused(index, match):
    wire, old = topk_wire()
    wire["topk/conv.weight/index"] = np.array(index, np.int32)
    with pytest.raises(ProtocolError, match=match):
        decode(TOPK, wire, old)


def test_non_finite_topk_value_is_refused():
    wire, old = topk_wire()
    wire["topk/fc.bias/value"] = wire["topk/fc.bias/value"].copy()
    wire["topk/fc.bias/value"][0] = np.inf
    with pytest.raises(NonFiniteError, match=r"fc\.bias"):
        decode(TOPK, wire, old)


def test_sum_that_overflows_the_dtype_is_refused():
    old = {"h": np.full(3, 60000, np.float16)}
    config = CompressionConfig("topk", topk_ratio=1.0)
    wire = {
        "topk/h/index": np.arange(3, dtype=np.int32),
        "topk/h/value": np.full(3, 3e4, np.float32),
    }
    with pytest.raises(NonFiniteError, match="'h'"):
        decode(config, wire, old)
