"""Accumulators the strategies share: every reply kept (robust aggregators), or summed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from medfed.errors import StrategyError
from medfed.protocol.tensors import Manifest, Weights, manifest_of
from medfed.strategies.base import NDArray, Reply

T = TypeVar("T")


@dataclass(frozen=True)
class Kept:
    node: str
    weights: Weights
    num_examples: int
    metrics: dict[str, float]


class KeepAll:
    """Keeps a private copy of every reply: O(nodes x model) memory, which median, trimmed mean
    and Krum need because they compare hospitals' updates coordinate by coordinate."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.replies: list[Kept] = []

    @property
    def count(self) -> int:
        return len(self.replies)

    def add(self, reply: Reply) -> None:
        if manifest_of(reply.weights) != self.manifest:
            raise StrategyError("update layout does not match the round's model")
        copied = {k: np.array(v, copy=True) for k, v in reply.weights.items()}
        self.replies.append(Kept(reply.node, copied, reply.num_examples, dict(reply.metrics)))

    def models(self) -> list[Weights]:
        if not self.replies:
            raise StrategyError("no updates were added; there is nothing to aggregate")
        return [r.weights for r in self.replies]


def expect(acc: object, kind: type[T]) -> T:
    """``acc`` as the accumulator type a strategy opened, or StrategyError."""
    if not isinstance(acc, kind):
        raise StrategyError(f"expected a {kind.__name__} accumulator, got {type(acc).__name__}")
    return acc


def cast_like(values: Mapping[str, npt.NDArray[Any]], model: Mapping[str, NDArray]) -> Weights:
    """Each tensor cast back to the global model's dtype (integers rounded, clipped)."""
    out: Weights = {}
    for name, like in model.items():
        value = np.asarray(values[name], dtype=np.float64)
        dtype = np.dtype(like.dtype)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)  # type: ignore[type-var]
            out[name] = np.clip(np.rint(value), info.min, info.max).astype(dtype)
        else:
            out[name] = value.astype(dtype).reshape(like.shape)
        if dtype.kind == "f" and not bool(np.isfinite(out[name]).all()):
            raise StrategyError(f"the aggregate of tensor {name!r} is not finite")
    return out
