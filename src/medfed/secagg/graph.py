"""Who shares with whom: the random k-regular graph of SecAgg+ (Bell et al., CCS 2020).

Nodes are placed on a ring in an order drawn from the round's public seed and each is joined to
the ``k/2`` nearest on either side (a Harary graph on a random permutation), so a node exchanges
keys, shares and pairwise masks with ``k`` neighbours, not ``n - 1``: cost per node grows with
``k ~ O(log n)``. ``k >= n - 1`` is the complete graph of the original SecAgg (Bonawitz et al.,
CCS 2017). Every node computes the same graph from the same public inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence

from medfed.errors import SecAggError


def default_degree(nodes: int) -> int:
    """An even ``k`` of about ``2 log2 n`` (complete graph for small rounds)."""
    if nodes <= 8:
        return max(nodes - 1, 0)
    k = 2 * math.ceil(math.log2(nodes))
    return min(k + (k % 2), nodes - 1)


def neighbours(nodes: Sequence[str], degree: int, seed: bytes) -> dict[str, tuple[str, ...]]:
    """Each node's neighbours (never itself), symmetric, in name order."""
    names = sorted(set(nodes))
    if len(names) != len(nodes):
        raise SecAggError("a secure-aggregation round lists a node twice")
    n = len(names)
    if degree >= n - 1:
        return {u: tuple(v for v in names if v != u) for u in names}
    if degree < 1 or degree % 2:
        raise SecAggError(f"the SecAgg+ degree must be even and >= 2 below n - 1, got {degree}")
    ring = sorted(names, key=lambda name: hmac.digest(seed, name.encode(), hashlib.sha256))
    half = degree // 2
    out: dict[str, set[str]] = {u: set() for u in names}
    for i, u in enumerate(ring):
        for step in range(1, half + 1):
            v = ring[(i + step) % n]
            out[u].add(v)
            out[v].add(u)
    return {u: tuple(sorted(vs)) for u, vs in out.items()}
