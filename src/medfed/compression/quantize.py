"""8-bit stochastic quantization of a float tensor onto 256 evenly spaced levels.

The standard min-max uniform scheme: with ``lo = min(v)`` and ``scale = (max(v) - min(v)) / 255``
each value becomes the code ``c = floor((v - lo) / scale + u)``, ``u ~ U[0, 1)``, clipped to
[0, 255], and comes back as ``lo + c * scale``. Rounding up with probability equal to the
fractional part makes the result unbiased, ``E[lo + c * scale] = v``: the stochastic rounding of
QSGD (Alistarh et al., 2017, "QSGD: Communication-Efficient SGD via Gradient Quantization and
Encoding", NeurIPS). Errors from many nodes and rounds then average out instead of all leaning the
way round-to-nearest would push them.

Error bound: with ``x = (v - lo) / scale`` the code is ``floor(x)`` or ``floor(x) + 1``, so
``|lo + c * scale - v| < scale`` per element in exact arithmetic; the float32 result adds at most
half a float32 ulp of the value. ``lo`` and ``scale`` travel as float32, so they are made float32
here, ``lo`` rounded down and ``scale`` up: every ``x`` stays in [0, 255] and the bound holds with
the very numbers the receiver sees.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from medfed.errors import NonFiniteError, ProtocolError

LEVELS = 255
"""Steps between the lowest and the highest of the 256 codes."""


def quantize8(
    values: npt.NDArray[np.generic], rng: np.random.Generator
) -> tuple[npt.NDArray[np.uint8], float, float]:
    """Codes (uint8, ``values``' shape), ``lo`` and ``scale`` (both exact float32 values).

    ``scale`` is 0 when all values are equal (then every code is 0 and ``lo`` is the value).
    """
    shape = np.shape(values)
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        return np.zeros(shape, dtype=np.uint8), 0.0, 0.0
    if not bool(np.isfinite(flat).all()):
        raise NonFiniteError("cannot quantize values that hold NaN or infinity")
    low, high = float(flat.min()), float(flat.max())
    lo = _float32_down(low)
    scale = _float32_up((high - lo) / LEVELS) if high > lo else 0.0
    if scale == 0.0 and high > lo:  # a span so small that span / 255 underflows float64
        scale = float(np.nextafter(np.float32(0), np.float32(1)))
    if not (math.isfinite(lo) and math.isfinite(scale)):
        raise NonFiniteError(f"cannot quantize values spanning [{low}, {high}]: beyond float32")
    if scale == 0.0:
        return np.zeros(shape, dtype=np.uint8), lo, 0.0
    levels = (flat - lo) / scale
    levels += rng.random(flat.size)
    np.floor(levels, out=levels)
    np.clip(levels, 0, LEVELS, out=levels)  # only float64 rounding can step outside
    return levels.astype(np.uint8).reshape(shape), lo, scale


def dequantize8(codes: npt.NDArray[np.uint8], lo: float, scale: float) -> npt.NDArray[np.float32]:
    """``lo + codes * scale`` as float32; a range no sender could have made is refused."""
    if codes.dtype != np.uint8:
        raise ProtocolError(f"quantized codes must be uint8, got {codes.dtype}")
    if not (math.isfinite(lo) and math.isfinite(scale)):
        raise NonFiniteError(f"quantization range lo={lo}, scale={scale} is not finite")
    if scale < 0:
        raise ProtocolError(f"quantization scale must be >= 0, got {scale}")
    with np.errstate(over="ignore"):
        out = (lo + codes.astype(np.float64) * scale).astype(np.float32)
    if not bool(np.isfinite(out).all()):
        raise NonFiniteError(f"quantization range lo={lo}, scale={scale} overflows float32")
    return out


def _float32_down(x: float) -> float:
    """The largest float32 <= x (-inf below float32's range)."""
    with np.errstate(over="ignore"):
        f = np.float32(x)
    if float(f) > x:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def _float32_up(x: float) -> float:
    """The smallest float32 >= x (inf above float32's range); a tiny x > 0 gives a subnormal."""
    with np.errstate(over="ignore"):
        f = np.float32(x)
    if float(f) < x:
        f = np.nextafter(f, np.float32(np.inf))
    return float(f)
