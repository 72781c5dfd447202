"""Top-k sparsification: send only the k coordinates of largest magnitude, as (index, value).

Dropping the small coordinates alone would bias training; with *error feedback* the node keeps
what it did not send (its residual) and adds it to the next round's delta, so every coordinate is
delivered eventually (Stich, Cordonnier and Jaggi, 2018, "Sparsified SGD with Memory", NeurIPS;
Lin et al., 2018, "Deep Gradient Compression", ICLR). The residual bookkeeping lives in
``codec``; this module is the selection and its inverse.

Indices travel as int32, sorted ascending, so a receiver can check them cheaply: in range,
strictly increasing (hence no duplicates). ``np.argpartition`` selects in O(n) time.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from medfed.errors import ConfigError, NonFiniteError, ProtocolError

MAX_ELEMENTS = int(np.iinfo(np.int32).max)
"""Largest tensor that int32 indices can address."""


def topk_count(size: int, ratio: float) -> int:
    """``max(1, ceil(ratio * size))`` coordinates of a ``size``-element tensor (0 when it is empty).

    A product within 1e-9 of an integer counts as that integer, so 0.07 of 100 is 7 and not 8
    from binary rounding (0.07 * 100 == 7.000000000000001). Node and coordinator call this same
    function, so they always agree on k.
    """
    if size < 0:
        raise ConfigError(f"a tensor size must be >= 0, got {size}")
    if not 0 < ratio <= 1:
        raise ConfigError(f"top-k ratio must be in (0, 1], got {ratio}")
    if size == 0:
        return 0
    exact = ratio * size
    nearest = round(exact)
    k = nearest if abs(exact - nearest) <= 1e-9 * exact else math.ceil(exact)
    return min(size, max(1, k))


def sparsify(
    values: npt.NDArray[np.generic], k: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """The flat indices (ascending) and float32 values of the ``k`` largest ``|values|``.

    Ties at the k-th magnitude are broken arbitrarily (but deterministically).
    """
    flat = np.ravel(values)
    if not 0 <= k <= flat.size:
        raise ConfigError(f"cannot keep {k} of {flat.size} coordinates")
    if flat.size > MAX_ELEMENTS:
        raise ConfigError(f"a tensor of {flat.size} elements is too large for int32 indices")
    if not bool(np.isfinite(flat).all()):
        raise NonFiniteError("cannot sparsify values that hold NaN or infinity")
    if k == flat.size:
        chosen = np.arange(flat.size)
    else:
        cut = flat.size - k
        chosen = np.argpartition(np.abs(flat), cut)[cut:] if k else np.arange(0)
        chosen.sort()
    return chosen.astype(np.int32), flat[chosen].astype(np.float32)


def densify(
    indices: npt.NDArray[np.generic], values: npt.NDArray[np.generic], shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """The dense float32 tensor with ``values`` at flat ``indices`` and zeros elsewhere.

    ``indices`` and ``values`` come off the wire, so everything is checked before use.
    """
    size = math.prod(shape)
    if indices.ndim != 1 or values.ndim != 1 or indices.size != values.size:
        raise ProtocolError(
            f"sparse indices {list(indices.shape)} and values {list(values.shape)} "
            "must be two 1-D arrays of one length"
        )
    if indices.dtype.kind not in "iu" or values.dtype.kind != "f":
        raise ProtocolError(
            f"sparse indices must be integers and values floats, "
            f"got {indices.dtype} and {values.dtype}"
        )
    if indices.size > size:
        raise ProtocolError(f"{indices.size} sparse coordinates for a tensor of {size}")
    wide = indices.astype(np.int64)  # no wrap-around in the difference below
    if wide.size and not bool((np.diff(wide) > 0).all()):
        raise ProtocolError("sparse indices must be strictly increasing (sorted, no duplicates)")
    if wide.size and (wide[0] < 0 or wide[-1] >= size):
        raise ProtocolError(
            f"sparse index out of range [0, {size}): first {wide[0]}, last {wide[-1]}"
        )
    if not bool(np.isfinite(values).all()):
        raise NonFiniteError("sparse values hold NaN or infinity")
    out = np.zeros(size, dtype=np.float32)
    out[wide] = values
    return out.reshape(shape)
