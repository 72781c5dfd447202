"""Capping one site's share of the aggregation weight (a study's ``max_site_weight``).

Example-weighted strategies give a site the share ``n_k / sum n`` of the new model; a study may
cap every share at ``m``. The capped weights are ``min(n_k, c)``, with ``c`` the water-filling
level at which the capped sites hold exactly ``m`` each and the others keep their own ``n_k``:

    c = m * U / (1 - k m)     (k sites capped, U the sum of the uncapped weights)

so the weight the capped sites lose is spread over the others in proportion to their own
(equivalently: the others' shares are scaled up together). It needs ``k * m < 1`` for some
``k``: with fewer than ``1/m`` sites no cap can hold, and every site is given the same weight,
the closest there is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from medfed.errors import StrategyError


def weight_cap(weights: Sequence[float], max_share: float) -> float | None:
    """The level ``c`` at which ``min(w, c)`` leaves no weight more than ``max_share`` of their
    sum; None when no weight needs capping."""
    if not 0 < max_share <= 1:
        raise StrategyError(f"a site's maximum share must be in (0, 1], got {max_share}")
    if any(not (math.isfinite(w) and w > 0) for w in weights):
        raise StrategyError("site weights must be finite and > 0")
    ordered = sorted(weights, reverse=True)
    if not ordered or ordered[0] <= max_share * sum(ordered):
        return None
    for k in range(1, len(ordered)):
        if k * max_share >= 1:
            break
        rest = math.fsum(ordered[k:])
        level = max_share * rest / (1 - k * max_share)
        if ordered[k] <= level <= ordered[k - 1]:
            return level
    return ordered[-1]  # fewer than 1/max_share sites: all weigh the same


def capped(weights: Sequence[float], max_share: float) -> list[float]:
    """``weights`` with each capped at the water-filling level (the reference the tests use)."""
    level = weight_cap(weights, max_share)
    return list(weights) if level is None else [min(w, level) for w in weights]


def largest_share(weights: Sequence[float]) -> float:
    """The largest weight's share of the total (0 for no weights)."""
    total = math.fsum(weights)
    return max(weights) / total if weights and total > 0 else 0.0
