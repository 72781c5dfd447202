import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.compression.quantize import dequantize8, quantize8
from medfed.errors import NonFiniteError, ProtocolError

TINY = 2.0**-149  # smallest float32 subnormal
EPS32 = 2.0**-23


def is_float32(x):
    return float(np.float32(x)) == x


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    width = 32 if dtype == np.float32 else 64
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=6))
    scale = float(np.float32(draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e6, 1e30]))))
    elements = st.floats(-scale, scale, width=width, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=200, deadline=None)
@given(arrays(), st.integers(0, 2**32 - 1))
def test_error_is_below_one_step(values, seed):
    codes, lo, scale = quantize8(values, np.random.default_rng(seed))
    v = values.astype(np.float64)
    low, high = float(v.min()), float(v.max())
    assert codes.dtype == np.uint8 and codes.shape == values.shape
    # lo and scale travel as float32: they must be exact float32 numbers covering [low, high]
    assert is_float32(lo) and is_float32(scale)
    assert lo <= low and low - lo <= abs(float(np.spacing(np.float32(low)))) + TINY
    if values.dtype == np.float32:
        assert lo == low
    assert scale * 255 >= high - lo
    assert scale <= (high - lo) / 255 * (1 + 2 * EPS32) + TINY
    out = dequantize8(codes, lo, scale)
    assert out.dtype == np.float32 and out.shape == values.shape
    # |error| < scale per element, plus half a float32 ulp of the value for the float32 result
    bound = scale * (1 + EPS32) + EPS32 * np.abs(v) + TINY
    assert np.all(np.abs(out.astype(np.float64) - v) <= bound)


def test_stochastic_rounding_is_unbiased():
    # Every row of `batch` is `v`, so batch min/max are v's and one call quantizes v N times
    # independently (one uniform per element). Per element the code is floor(x) + Bernoulli(frac x),
    # variance <= 1/4 steps², so the mean of N has standard deviation <= scale / (2 sqrt N);
    # 5 sigma leaves a chance below 1e-6 per element (and the seed is fixed).
    n = 4000
    v = np.random.default_rng(7).normal(size=64).astype(np.float32)
    batch = np.tile(v, (n, 1))
    codes, lo, scale = quantize8(batch, np.random.default_rng(11))
    mean = dequantize8(codes, lo, scale).astype(np.float64).mean(axis=0)
    tolerance = 5 * scale / (2 * np.sqrt(n)) + EPS32 * np.abs(v)
    assert np.all(np.abs(mean - v) <= tolerance)
    # ... and the test has teeth: round-to-nearest, which is biased, fails it by far
    nearest = lo + np.rint((v.astype(np.float64) - lo) / scale) * scale
    assert np.max(np.abs(nearest - v)) > 5 * tolerance.max()
    # the rounding is random: an element half-way between two levels takes both codes
    assert all(
        len(np.unique(codes[:, j])) == 2 for j in range(v.size) if v[j] not in (v.min(), v.max())
    )


def test_levels_on_the_grid_are_exact():
    values = np.arange(256, dtype=np.float32).reshape(16, 16) - 100
    codes, lo, scale = quantize8(values, np.random.default_rng(0))
    assert (lo, scale) == (-100.0, 1.0)
    np.testing.assert_array_equal(codes, np.arange(256).reshape(16, 16))
    np.testing.assert_array_equal(dequantize8(codes, lo, scale), values)


def test_constant_tensor_has_zero_scale():
    values = np.full((3, 2), 3.5, dtype=np.float32)
    codes, lo, scale = quantize8(values, np.random.default_rng(0))
    assert (lo, scale) == (3.5, 0.0)
    np.testing.assert_array_equal(codes, 0)
    np.testing.assert_array_equal(dequantize8(codes, lo, scale), values)


def test_empty_and_scalar_tensors():
    codes, lo, scale = quantize8(np.zeros((0, 3), dtype=np.float32), np.random.default_rng(0))
    assert codes.shape == (0, 3) and (lo, scale) == (0.0, 0.0)
    assert dequantize8(codes, lo, scale).shape == (0, 3)
    codes, lo, scale = quantize8(np.array(-2.25, dtype=np.float32), np.random.default_rng(0))
    assert codes.shape == () and dequantize8(codes, lo, scale) == np.float32(-2.25)


def test_same_seed_same_codes():
    values = np.random.default_rng(1).normal(size=100)
    a = quantize8(values, np.random.default_rng(5))
    b = quantize8(values, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(NonFiniteError):
        quantize8(np.array([1.0, bad], dtype=np.float32), np.random.default_rng(0))


@pytest.mark.parametrize(("lo", "scale"), [(np.nan, 1.0), (0.0, np.inf), (0.0, -1.0), (3e38, 1e37)])
def test_impossible_ranges_are_refused(lo, scale):
    with pytest.raises(ProtocolError):
        dequantize8(np.array([0, 255], dtype=np.uint8), lo, scale)


def test_codes_must_be_uint8():
    with pytest.raises(ProtocolError, match="uint8"):
        dequantize8(np.array([0, 1], dtype=np.int64), 0.0, 1.0)


def test_a_span_that_underflows_still_gets_a_positive_scale():
    # Found by Hypothesis in CI: (5e-324 - 0) / 255 underflows float64 to 0.
    codes, lo, scale = quantize8(np.array([0.0, 5e-324]), np.random.default_rng(0))
    assert scale > 0 and scale * 255 >= 5e-324 - lo
    assert codes.dtype == np.uint8
