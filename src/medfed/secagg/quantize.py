"""Fixed-point encoding of real updates into Z_(2^32), where masks and sums live.

Each node clips its (weighted) update to [-R, R], scales by ``s`` and rounds *stochastically*
(unbiased: E[round(v)] = v) into a signed integer stored modulo 2^32. The scale leaves headroom
for the sum of ``n`` nodes: n * R * s < 2^31, so the modular sum decodes as a signed int32 with no
wrap-around. Error of the decoded sum: below n / s per coordinate (each node's rounding error is
under one step 1/s), plus whatever the clip removed, which each node counts and reports.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.errors import SecAggError
from medfed.secagg.hazmat import prg

U32 = npt.NDArray[np.uint32]
F64 = npt.NDArray[np.float64]
HEADROOM = 2**31 - 1


@dataclass(frozen=True)
class FixedPoint:
    """The encoding every node of one round shares: clip range and scale."""

    clip: float
    nodes: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise SecAggError(f"the secure-aggregation clip range must be > 0, got {self.clip}")
        if self.nodes < 1:
            raise SecAggError(f"cannot encode for {self.nodes} nodes")
        if self.scale < 1.0:
            raise SecAggError(
                f"clip range {self.clip:g} x {self.nodes} nodes leaves no precision in 32 bits"
            )

    @property
    def scale(self) -> float:
        return math.floor(HEADROOM / (self.nodes * self.clip))

    @property
    def error_bound(self) -> float:
        """Largest error of a decoded sum of ``nodes`` unclipped inputs, per coordinate."""
        return self.nodes / self.scale

    def encode(self, values: npt.ArrayLike, rng: np.random.Generator) -> tuple[U32, int]:
        """``values`` clipped, scaled and stochastically rounded; also how many were clipped."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if not math.isfinite(float(x.sum())) and not bool(np.isfinite(x).all()):
            raise SecAggError("an update to be securely aggregated holds NaN or infinity")
        scaled, rounded = _scratch(x.size)  # reused per thread: 1M-word updates, no page faults
        np.clip(x, -self.clip, self.clip, out=scaled)
        clipped = x.size - int(np.count_nonzero(scaled == x))
        scaled *= self.scale
        np.floor(scaled, out=rounded)
        scaled -= rounded  # the fractional part: round up with that probability
        scaled *= 2.0**32
        uniform = prg.expand(rng.bytes(prg.SEED_BYTES), x.size)  # 32 uniform bits per word
        rounded += uniform < scaled
        return rounded.astype(np.int32).view(np.uint32), clipped

    def decode(self, total: U32) -> F64:
        """The real-valued sum behind a modular sum of encoded vectors."""
        return np.asarray(total, dtype=np.uint32).view(np.int32).astype(np.float64) / self.scale


_local = threading.local()


def _scratch(size: int) -> tuple[F64, F64]:
    """Two float64 work vectors of ``size`` for this thread, kept for the next update."""
    held: tuple[F64, F64] | None = getattr(_local, "buffers", None)
    if held is None or held[0].size != size:
        held = (np.empty(size, np.float64), np.empty(size, np.float64))
        _local.buffers = held
    return held
