"""Cyclic (sequential) training: the model visits one hospital per round.

As FLamby benchmarks it (du Terrail et al., NeurIPS 2022 Datasets and Benchmarks, "FLamby",
strategy ``Cyclic``; Chang et al. 2018 "Distributed deep learning networks among institutions
for medical imaging"): each round one site trains from the current model and its result becomes
the next global model. Sites are visited in a fresh seeded random order every cycle, or in name
order with ``deterministic = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medfed.errors import StrategyError
from medfed.strategies.fedavg import FedAvg


class Cyclic(FedAvg):
    name = "cyclic"

    def __init__(self, seed: int, deterministic: bool = False) -> None:
        self.seed = seed
        self.deterministic = deterministic

    def select(self, server_round: int, nodes: Sequence[str]) -> list[str]:
        return [cyclic_site(sorted(nodes), server_round, self.seed, self.deterministic)]


def cyclic_site(nodes: Sequence[str], server_round: int, seed: int, deterministic: bool) -> str:
    """The site that trains in ``server_round`` (1-based): position (r-1) mod n of this cycle's
    order, a permutation drawn from (seed, cycle) unless the order is fixed."""
    if not nodes:
        raise StrategyError("cyclic training has no site to choose from")
    cycle, position = divmod(server_round - 1, len(nodes))
    if deterministic:
        return nodes[position]
    order = np.random.default_rng([seed, cycle]).permutation(len(nodes))
    return nodes[int(order[position])]
