import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.compression.topk import densify, sparsify, topk_count
from medfed.errors import ConfigError, NonFiniteError, ProtocolError


@pytest.mark.parametrize(
    ("size", "ratio", "k"),
    [
        (1000, 0.01, 10),
        (1001, 0.01, 11),
        (100, 0.01, 1),
        (5, 0.01, 1),
        (100, 0.07, 7),  # 0.07 * 100 == 7.000000000000001 in binary floating point
        (100, 1.0, 100),
        (3, 0.5, 2),
        (1, 1e-9, 1),
        (0, 0.5, 0),
        (1_000_000, 0.01, 10_000),
    ],
)
def test_topk_count(size, ratio, k):
    assert topk_count(size, ratio) == k


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan")])
def test_topk_count_refuses_bad_ratios(ratio):
    with pytest.raises(ConfigError):
        topk_count(10, ratio)


@st.composite
def vectors_and_k(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=8))
    elements = st.floats(-1e6, 1e6, width=32)
    values = draw(
        hnp.arrays(draw(st.sampled_from([np.float32, np.float64])), shape, elements=elements)
    )
    return values, draw(st.integers(0, values.size))


@settings(max_examples=200, deadline=None)
@given(vectors_and_k())
def test_sparsify_keeps_the_k_largest_magnitudes(case):
    values, k = case
    index, value = sparsify(values, k)
    flat = values.reshape(-1)
    assert index.dtype == np.int32 and value.dtype == np.float32
    assert index.shape == value.shape == (k,)
    assert np.all(np.diff(index.astype(np.int64)) > 0)
    np.testing.assert_array_equal(value, flat[index].astype(np.float32))
    # same magnitudes as a full sort (ties may pick different positions of equal magnitude)
    magnitudes = np.sort(np.abs(flat))
    np.testing.assert_array_equal(np.sort(np.abs(flat[index])), magnitudes[flat.size - k :])
    dense = densify(index, value, values.shape)
    assert dense.dtype == np.float32 and dense.shape == values.shape
    expected = np.zeros(flat.size, dtype=np.float32)
    expected[index] = flat[index]
    np.testing.assert_array_equal(dense.reshape(-1), expected)


def test_known_answer():
    index, value = sparsify(np.array([[0.5, -4.0, 1.0], [3.0, 0.0, -2.0]]), 3)
    np.testing.assert_array_equal(index, [1, 3, 5])
    np.testing.assert_array_equal(value, [-4.0, 3.0, -2.0])
    np.testing.assert_array_equal(
        densify(index, value, (2, 3)), [[0.0, -4.0, 0.0], [3.0, 0.0, -2.0]]
    )


@pytest.mark.parametrize("k", [-1, 7])
def test_sparsify_refuses_impossible_k(k):
    with pytest.raises(ConfigError):
        sparsify(np.zeros(6), k)


def test_sparsify_refuses_nan():
    with pytest.raises(NonFiniteError):
        sparsify(np.array([1.0, np.nan]), 1)


@pytest.mark.parametrize(
    ("index", "value", "match"),
    [
        (np.array([0, 6], np.int32), np.ones(2, np.float32), "out of range"),
        (np.array([-1, 2], np.int32), np.ones(2, np.float32), "out of range"),
        (np.array([2, 2], np.int32), np.ones(2, np.float32), "strictly increasing"),
        (np.array([3, 1], np.int32), np.ones(2, np.float32), "strictly increasing"),
        (np.array([2**31 - 1, -(2**31)], np.int32), np.ones(2, np.float32), "increasing"),
        (np.array([0, 1], np.int32), np.ones(3, np.float32), "1-D arrays of one length"),
        (np.array([[0, 1]], np.int32), np.ones((1, 2), np.float32), "1-D"),
        (np.array([0.0, 1.0]), np.ones(2, np.float32), "integers"),
        (np.array([0, 1], np.int32), np.ones(2, np.int32), "floats"),
        (np.arange(7, dtype=np.int32), np.ones(7, np.float32), "7 sparse coordinates"),
        (np.array([0, 1], np.int32), np.array([1.0, np.nan], np.float32), "NaN"),
    ],
)
def test_densify_refuses_malformed_input(index, value, match):
    with pytest.raises(ProtocolError, match=match):
        densify(index, value, (2, 3))


def test_empty():
    index, value = sparsify(np.zeros((0, 4), dtype=np.float32), 0)
    assert index.shape == value.shape == (0,)
    assert densify(index, value, (0, 4)).shape == (0, 4)
    assert not densify(index[:0], value[:0], (2, 2)).any()
