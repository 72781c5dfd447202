"""The contract between the round engine and an aggregation strategy.

Modelled on Flower's ``configure_train`` / ``aggregate_train``, but streaming where the math
allows: the engine opens an accumulator with ``start_round``, adds each validated reply as it
arrives, then asks the strategy for the new global model. FedAvg-like strategies keep O(model)
memory; robust aggregators (median, Krum) must see every update and keep O(nodes x model).

A strategy may keep *server state* between rounds (FedAdam's moments, SCAFFOLD's control
variate). The engine stores it next to the model, content-addressed, and commits both in one
transaction, so a restarted coordinator resumes bit-identically. Tensors in ``broadcast`` reach
the nodes with the model; ``reply_extras`` declares tensors each reply carries besides the model
(SCAFFOLD's control-variate change), so the coordinator can check a reply's layout before
receiving it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from medfed.protocol.tensors import Manifest, Weights

NDArray = npt.NDArray[np.generic]
EMPTY = Manifest(())


@dataclass(frozen=True)
class Reply:
    """One validated training reply. ``weights`` may be views of a receive buffer that is reused
    after ``Accumulator.add`` returns: an accumulator that keeps them must copy."""

    node: str
    weights: Mapping[str, NDArray]
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    extras: Mapping[str, NDArray] = field(default_factory=dict)
    represents: int = 1
    """How many hospitals' updates this reply sums: more than one only for the unmasked sum of a
    secure-aggregation round, whose ``weights`` are then the survivors' (weighted) mean."""


class Accumulator(Protocol):
    @property
    def count(self) -> int:
        """Replies added so far."""
        ...

    def add(self, reply: Reply) -> None:
        """Fold one reply in; raises StrategyError (and changes nothing) if it does not fit."""
        ...


class Strategy(Protocol):
    name: str

    def init_state(self, model: Mapping[str, NDArray]) -> Weights:
        """Server state before round 1 (empty for stateless strategies)."""
        ...

    def broadcast(self, state: Mapping[str, NDArray]) -> Weights:
        """State tensors the nodes receive with the model this round."""
        ...

    def reply_extras(self, model: Manifest) -> Manifest:
        """Layout of the tensors every reply carries besides the model."""
        ...

    def client_settings(self) -> dict[str, str]:
        """What the node-side update must do for this strategy (e.g. ``algorithm=scaffold``)."""
        ...

    def configure_train(self, server_round: int) -> dict[str, float]:
        """Extra local-training settings sent to every node this round (e.g. FedProx's mu)."""
        ...

    def select(self, server_round: int, nodes: Sequence[str]) -> list[str]:
        """Which of the eligible ``nodes`` train this round (all, or one for cyclic training)."""
        ...

    def round_metrics(self, state: Mapping[str, NDArray]) -> dict[str, float]:
        """Metrics the strategy adds to a committed round (e.g. DP-FedAvg's epsilon)."""
        ...

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        """A fresh accumulator for this round's replies to ``model``."""
        ...

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        """The next global model and server state."""
        ...


class StrategyDefaults:
    """Stateless, every node trains, nothing extra travels: the defaults most strategies keep."""

    def init_state(self, model: Mapping[str, NDArray]) -> Weights:
        return {}

    def broadcast(self, state: Mapping[str, NDArray]) -> Weights:
        return {}

    def reply_extras(self, model: Manifest) -> Manifest:
        return EMPTY

    def client_settings(self) -> dict[str, str]:
        return {}

    def configure_train(self, server_round: int) -> dict[str, float]:
        return {}

    def select(self, server_round: int, nodes: Sequence[str]) -> list[str]:
        return list(nodes)

    def round_metrics(self, state: Mapping[str, NDArray]) -> dict[str, float]:
        return {}
