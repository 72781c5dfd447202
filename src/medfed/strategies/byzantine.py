"""Aggregators that survive faulty or malicious hospitals, as strategies.

The math is in ``robust.py``. Median, trimmed mean and Krum compare hospitals' models coordinate
by coordinate or pairwise, so they keep every reply (O(nodes x model) memory) and cannot run
under secure aggregation, which reveals only the sum (``registry.secure_aggregation``). Norm
bounding clips each site's change to a norm before averaging; a site can clip its own update
before masking, so it composes with secure aggregation and stays streaming.

| strategy | tolerates | memory | with secure aggregation |
|---|---|---|---|
| median | f < n/2 arbitrary sites | n x model | refused |
| trimmed_mean (trim = f) | f sites, n > 2f | n x model | refused |
| krum (f, m) | f sites, n > 2f + 2 | n x model | refused |
| normbound (max_norm) | bounds any one site's pull | model | composes |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from medfed.errors import StrategyError
from medfed.protocol.tensors import Manifest, Weights, manifest_of
from medfed.strategies.accumulators import KeepAll, cast_like, expect
from medfed.strategies.base import Accumulator, NDArray, Reply, StrategyDefaults
from medfed.strategies.fedavg import BLOCK_ELEMENTS, WeightedSum
from medfed.strategies.robust import coordinate_median, multi_krum, trimmed_mean


class _KeepingStrategy(StrategyDefaults):
    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        return KeepAll(manifest_of(model))

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        sums = expect(acc, KeepAll)
        return cast_like(self.combine(sums.models()), model), dict(state)

    def combine(self, models: list[Weights]) -> Mapping[str, npt.NDArray[Any]]:
        raise NotImplementedError


class Median(_KeepingStrategy):
    """Coordinate-wise median (Yin et al., ICML 2018)."""

    name = "median"

    def combine(self, models: list[Weights]) -> Mapping[str, npt.NDArray[Any]]:
        return coordinate_median(models)


class TrimmedMean(_KeepingStrategy):
    """Coordinate-wise mean after dropping the ``trim`` largest and smallest values."""

    name = "trimmed_mean"

    def __init__(self, trim: int) -> None:
        if trim < 1:
            raise StrategyError(f"trimmed_mean needs trim >= 1, got {trim}")
        self.trim = trim

    def combine(self, models: list[Weights]) -> Mapping[str, npt.NDArray[Any]]:
        return trimmed_mean(models, self.trim)


class Krum(_KeepingStrategy):
    """Krum / Multi-Krum (Blanchard et al., NeurIPS 2017): the mean of the ``m`` models closest
    to their n - f - 2 nearest neighbours. Needs n > 2f + 2 replies."""

    name = "krum"

    def __init__(self, f: int, m: int = 1) -> None:
        if f < 0 or m < 1:
            raise StrategyError(f"krum needs f >= 0 and m >= 1, got f={f}, m={m}")
        self.f, self.m = f, m
        self.last_selected: list[int] = []

    def combine(self, models: list[Weights]) -> Mapping[str, npt.NDArray[Any]]:
        mean, self.last_selected = multi_krum(models, self.f, min(self.m, len(models)))
        return mean


class BoundedSums:
    """Example-weighted (or, with ``weighted=False``, uniform) mean of x + s_k (y_k - x),
    s_k = min(1, C / ||y_k - x||), streaming: the sum of s_k n_k y_k plus the weight
    (1 - s_k) n_k left on x."""

    def __init__(
        self, manifest: Manifest, x: Mapping[str, NDArray], max_norm: float, weighted: bool = True
    ) -> None:
        self.sum = WeightedSum(manifest)
        self.x = x
        self.max_norm = max_norm
        self.weighted = weighted
        self.x_weight = 0.0
        self.total = 0.0
        self.clipped = 0
        self.clipped_nodes: list[str] = []

    @property
    def count(self) -> int:
        return self.sum.count

    def add(self, reply: Reply) -> None:
        if manifest_of(reply.weights) != self.sum.manifest:
            raise StrategyError("update layout does not match the round's model")
        norm = _distance(reply.weights, self.x)
        scale = 1.0 if norm <= self.max_norm else self.max_norm / norm
        n = float(reply.num_examples) if self.weighted else float(reply.represents)
        if scale > 0:
            self.sum.add(reply.weights, n * scale, reply.represents)
        self.x_weight += n * (1.0 - scale)
        self.total += n
        self.clipped += scale < 1.0
        if scale < 1.0:
            self.clipped_nodes.append(reply.node)


class NormBound(StrategyDefaults):
    """FedAvg of updates clipped to L2 norm ``max_norm`` (Sun et al. 2019, "Can You Really
    Backdoor Federated Learning?")."""

    name = "normbound"

    def __init__(self, max_norm: float) -> None:
        if not (np.isfinite(max_norm) and max_norm > 0):
            raise StrategyError(f"normbound max_norm must be finite and > 0, got {max_norm}")
        self.max_norm = float(max_norm)

    def configure_train(self, server_round: int) -> dict[str, float]:
        """Honest sites clip their own change (so this composes with secure aggregation); the
        coordinator clips again whatever it can see, which bounds a site that does not."""
        return {"clip_norm": self.max_norm}

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        return BoundedSums(manifest_of(model), model, self.max_norm)

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        return cast_like(bounded_mean(acc, model), model), dict(state)


def bounded_mean(acc: Accumulator, model: Mapping[str, NDArray]) -> dict[str, npt.NDArray[Any]]:
    """The mean a ``BoundedSums`` holds, in float64."""
    sums = expect(acc, BoundedSums)
    if sums.count == 0:
        raise StrategyError("no updates were added; there is nothing to aggregate")
    kept = sums.sum.total_weight
    mean: Mapping[str, NDArray] = sums.sum.mean() if sums.sum.count and kept > 0 else model
    return {
        k: (kept * np.asarray(mean[k], np.float64) + sums.x_weight * np.asarray(v, np.float64))
        / sums.total
        for k, v in model.items()
    }


def _distance(a: Mapping[str, NDArray], b: Mapping[str, NDArray]) -> float:
    total = 0.0
    for name, array in a.items():
        flat_a, flat_b = np.ravel(array), np.ravel(b[name])
        for start in range(0, flat_a.size, BLOCK_ELEMENTS):
            stop = start + BLOCK_ELEMENTS
            diff = flat_a[start:stop].astype(np.float64) - flat_b[start:stop].astype(np.float64)
            total += float(np.dot(diff, diff))
    return float(np.sqrt(total))
