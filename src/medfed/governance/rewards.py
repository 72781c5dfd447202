"""Reward points: a study's pot split among its sites by contribution, in whole points.

Negative contributions are clipped to 0 before splitting. A negative Shapley value says the
site's updates made the model worse on the consortium's evaluation; paying it negative points
would be a fine, and sanctions are the council's to decide by a vote (``governance.council``,
evidence from ``governance.reputation``), not an automatic side effect of arithmetic. A site that
helped nobody simply earns nothing. When no site has a positive contribution (or none could be
estimated, e.g. under secure aggregation) the pot is split equally among the sites listed: each
did the work.

Rounding is Hamilton's largest-remainder method over exact rationals (``fractions.Fraction`` of
each float, so no machine's float rounding can change a share): everyone gets the floor of their
exact share, and the points left go one each to the largest remainders, ties to the site name
that sorts first. The points always sum to the pot exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction

from medfed.errors import ConfigError


def split_rewards(pot: int, contributions: Mapping[str, float]) -> dict[str, int]:
    """``pot`` points over the sites of ``contributions``, by their non-negative contribution."""
    if pot < 0:
        raise ConfigError(f"a reward pot is a non-negative number of points, not {pot}")
    if not contributions:
        return {}
    weights = {}
    for site, value in contributions.items():
        if not math.isfinite(value):
            raise ConfigError(f"site {site!r} has a non-finite contribution {value}")
        weights[site] = Fraction(max(0.0, value))
    total = sum(weights.values(), Fraction(0))
    if total == 0:
        weights = dict.fromkeys(weights, Fraction(1))
        total = Fraction(len(weights))
    exact = {site: pot * w / total for site, w in weights.items()}
    points = {site: math.floor(share) for site, share in exact.items()}
    left = pot - sum(points.values())
    by_remainder = sorted(exact, key=lambda s: (-(exact[s] - points[s]), s))
    for site in by_remainder[:left]:
        points[site] += 1
    return dict(sorted(points.items()))


def study_rewards(pot: int, rounds: Iterable[Mapping[str, float]]) -> dict[str, int]:
    """Split ``pot`` by each site's contribution summed over the study's rounds (a site's net
    effect: a harmful round cancels a helpful one before clipping)."""
    totals: dict[str, float] = {}
    for contributions in rounds:
        for site, value in contributions.items():
            totals[site] = totals.get(site, 0.0) + value
    return split_rewards(pot, totals)
