"""Robust aggregation: combine updates so that a few faulty or malicious hospitals cannot steer it.

* Coordinate-wise median and trimmed mean (Yin et al., 2018, "Byzantine-Robust Distributed
  Learning: Towards Optimal Statistical Rates", Section 3): with at most ``f`` bad updates and
  ``trim = f``, every coordinate of the result lies between the smallest and largest honest value.
* Krum and Multi-Krum (Blanchard et al., 2017, "Machine Learning with Adversaries: Byzantine
  Tolerant Gradient Descent", Section 4): score each update by the summed squared distance to its
  ``n - f - 2`` nearest neighbours and keep the ``m`` best; requires ``n > 2f + 2``.
* Norm bounding (Sun et al., 2019, "Can You Really Backdoor Federated Learning?", Section 4.1):
  scale an update down to a maximum L2 norm so that no single site can dominate the sum.

Updates are ``name -> ndarray`` mappings with one layout. Everything is computed in float64 on
flattened vectors (``flatten``/``unflatten``) and returned as float64; the caller casts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from medfed.errors import StrategyError

Float64Array = npt.NDArray[np.float64]
Update = Mapping[str, npt.ArrayLike]


def flatten(update: Update) -> Float64Array:
    """All tensors of ``update`` as one float64 vector, concatenated in key order."""
    return flatten_like(update, update, "update")


def flatten_like(update: Update, like: Update, what: str = "update") -> Float64Array:
    """``update`` flattened in the key order of ``like``, after checking it has the same layout.

    Raises StrategyError if names or shapes differ, a tensor is not numeric, or a value is not
    finite: every robust rule assumes finite coordinates (a NaN has no rank and no distance).
    """
    if not isinstance(update, Mapping):
        raise StrategyError(f"{what} must be a mapping of name -> array, got {type(update)}")
    if set(update) != set(like):
        missing, extra = sorted(set(like) - set(update)), sorted(set(update) - set(like))
        raise StrategyError(f"{what} has a different layout: missing {missing}, extra {extra}")
    parts = []
    for name in like:
        array, expected = np.asarray(update[name]), np.shape(like[name])
        if array.dtype.kind not in "fiu":
            raise StrategyError(f"{what}: tensor {name!r} has non-numeric dtype {array.dtype}")
        if array.shape != expected:
            raise StrategyError(
                f"{what}: tensor {name!r} has shape {array.shape}, expected {expected}"
            )
        values = array.astype(np.float64).ravel()
        if not bool(np.isfinite(values).all()):
            raise StrategyError(f"{what}: tensor {name!r} holds NaN or infinity")
        parts.append(values)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def unflatten(vector: npt.ArrayLike, like: Update) -> dict[str, Float64Array]:
    """Split a flat vector back into float64 tensors with the names and shapes of ``like``."""
    flat = np.array(vector, dtype=np.float64)  # a copy: the result never aliases the input
    sizes = [int(np.prod(np.shape(array), dtype=np.int64)) for array in like.values()]
    if flat.ndim != 1 or flat.size != sum(sizes):
        raise StrategyError(
            f"cannot unflatten a vector of shape {flat.shape} into a layout of {sum(sizes)} values"
        )
    out: dict[str, Float64Array] = {}
    offset = 0
    for (name, array), size in zip(like.items(), sizes, strict=True):
        out[name] = flat[offset : offset + size].reshape(np.shape(array))
        offset += size
    return out


def global_norm(update: Update) -> float:
    """The L2 norm over all tensors, computed without overflow for huge coordinates."""
    return _norm(flatten(update))


def clip_to_norm(update: Update, max_norm: float) -> tuple[dict[str, Float64Array], float]:
    """Scale ``update`` by ``min(1, max_norm / norm)``; returns ``(clipped, scale)``.

    A zero update has norm 0 and is returned unchanged with scale 1 (no division by zero). The
    clipped norm equals ``max_norm`` up to float64 rounding (a relative error of a few ulps).
    """
    if _bad_number(max_norm) or not math.isfinite(max_norm) or max_norm <= 0:
        raise StrategyError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    vector = flatten(update)
    norm = _norm(vector)
    scale = 1.0 if norm <= max_norm else float(max_norm) / norm
    return unflatten(vector * scale, update), scale


def coordinate_median(updates: Sequence[Update]) -> dict[str, Float64Array]:
    """The unweighted per-coordinate median (Yin et al., 2018, Option I)."""
    matrix = _stack(updates)
    with np.errstate(over="ignore"):  # the mean of the two middle values can overflow
        median = np.median(matrix, axis=0)
    return unflatten(_check_finite(median, "coordinate median"), updates[0])


def trimmed_mean(updates: Sequence[Update], trim: int) -> dict[str, Float64Array]:
    """Per coordinate, drop the ``trim`` largest and smallest values and average the rest.

    Yin et al., 2018, Option II, with ``trim`` = beta * n. The mean is clipped to the range of the
    kept values: mathematically a no-op, but float64 summation can otherwise land one ulp outside
    (``np.mean([0.1] * 3) > 0.1``), which would break the honest-range guarantee.
    """
    matrix = _stack(updates)
    n = matrix.shape[0]
    _check_count(trim, "trim")
    if n <= 2 * trim:
        raise StrategyError(f"trimmed mean needs n > 2*trim, got n={n} and trim={trim}")
    kept = np.sort(matrix, axis=0)[trim : n - trim]
    with np.errstate(over="ignore"):
        mean = _check_finite(kept.mean(axis=0), "trimmed mean")
    return unflatten(np.clip(mean, kept[0], kept[-1]), updates[0])


def krum_scores(updates: Sequence[Update], f: int) -> Float64Array:
    """Krum score of each update: summed squared distance to its ``n - f - 2`` nearest others."""
    return _krum_scores(_stack(updates), f)


def multi_krum(
    updates: Sequence[Update], f: int, m: int
) -> tuple[dict[str, Float64Array], list[int]]:
    """Mean of the ``m`` lowest-scoring updates, and their indices best first (ties by index).

    ``m`` must be in ``[1, n - f]``: keeping more than ``n - f`` updates would always admit one
    that may be Byzantine.
    """
    matrix = _stack(updates)
    scores = _krum_scores(matrix, f)
    n = len(scores)
    _check_count(m, "m")
    if not 1 <= m <= n - f:
        raise StrategyError(f"Multi-Krum needs 1 <= m <= n - f = {n - f}, got m={m}")
    selected = [int(i) for i in np.argsort(scores, kind="stable")[:m]]
    with np.errstate(over="ignore"):
        mean = _check_finite(matrix[selected].mean(axis=0), "Multi-Krum mean")
    return unflatten(mean, updates[0]), selected


def krum(updates: Sequence[Update], f: int) -> tuple[dict[str, Float64Array], list[int]]:
    """Krum: the single best-scoring update (``multi_krum`` with ``m = 1``)."""
    return multi_krum(updates, f, 1)


def _stack(updates: Sequence[Update]) -> Float64Array:
    if isinstance(updates, Mapping) or not isinstance(updates, Sequence):
        raise StrategyError("updates must be a sequence of name -> array mappings")
    if not updates:
        raise StrategyError("cannot aggregate zero updates")
    like = updates[0]
    rows = [flatten_like(u, like, f"update {i}") for i, u in enumerate(updates)]
    return np.stack(rows)


def _krum_scores(matrix: Float64Array, f: int) -> Float64Array:
    n = matrix.shape[0]
    _check_count(f, "f")
    if n <= 2 * f + 2:
        raise StrategyError(f"Krum needs n to exceed 2f+2, got n={n} and f={f} (2f+2={2 * f + 2})")
    neighbours = n - f - 2
    scores = np.empty(n, dtype=np.float64)
    with np.errstate(over="ignore"):  # a far-away attacker may sit at an infinite distance
        for i in range(n):
            distances = np.sum((matrix - matrix[i]) ** 2, axis=1)
            scores[i] = np.sort(np.delete(distances, i))[:neighbours].sum()
    return scores


def _norm(vector: Float64Array) -> float:
    largest = float(np.max(np.abs(vector))) if vector.size else 0.0
    if largest == 0.0:
        return 0.0
    return largest * math.sqrt(float(np.sum((vector / largest) ** 2)))


def _check_finite(vector: Float64Array, what: str) -> Float64Array:
    if not bool(np.isfinite(vector).all()):
        raise StrategyError(f"the {what} overflowed float64: the update values are too large")
    return vector


def _bad_number(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)


def _check_count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise StrategyError(f"{what} must be an integer >= 0, got {value!r}")
