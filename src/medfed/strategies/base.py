"""The contract between the round engine and an aggregation strategy.

Modelled on Flower's ``configure_train`` / ``aggregate_train``, but streaming: the engine opens an
accumulator with ``start_round``, adds each validated reply as it arrives (so memory is O(model),
not O(nodes x model)), then asks the strategy for the new global weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt

from medfed.protocol.tensors import Manifest, Weights
from medfed.strategies.fedavg import WeightedSum


class Strategy(Protocol):
    name: str

    def configure_train(self, server_round: int) -> dict[str, float]:
        """Extra local-training settings sent to every node this round (e.g. FedProx's mu)."""
        ...

    def start_round(self, manifest: Manifest) -> WeightedSum:
        """A fresh accumulator for replies whose layout is ``manifest``."""
        ...

    def aggregate(
        self, server_round: int, acc: WeightedSum, previous: Mapping[str, npt.NDArray[np.generic]]
    ) -> Weights:
        """The next global weights from the accumulated replies and the current global weights."""
        ...
