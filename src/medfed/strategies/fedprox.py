"""FedProx: FedAvg's aggregation, plus a proximal term in every node's local objective.

Each node minimises F_k(w) + (mu / 2) ||w - w_t||^2 (Li et al., 2020, "Federated Optimization in
Heterogeneous Networks", eq. 2), which bounds how far a site with an unusual data distribution can
pull its local model from the global one. The server side is unchanged; only ``mu`` is sent.
"""

from __future__ import annotations

import math

from medfed.errors import StrategyError
from medfed.strategies.fedavg import FedAvg


class FedProx(FedAvg):
    name = "fedprox"

    def __init__(self, mu: float) -> None:
        if (
            isinstance(mu, bool)
            or not isinstance(mu, int | float)
            or not math.isfinite(mu)
            or mu < 0
        ):
            raise StrategyError(f"FedProx mu must be a finite number >= 0, got {mu!r}")
        self.mu = float(mu)

    def configure_train(self, server_round: int) -> dict[str, float]:
        return {"proximal_mu": self.mu}
