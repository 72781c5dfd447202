"""What a training plan is: a model plus its local training recipe, behind one small contract.

A study refers to a plan by name and version; the node runs its own installed copy (see
``registry.plan_sha256``), so no model code ever crosses the wire, only weights and this config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from medfed.data.dataset import Dataset
from medfed.errors import ConfigError
from medfed.protocol.tensors import Weights
from medfed.training.score_histogram import ScoreHistogram

Optimizer = Literal["sgd", "adam"]
OPTIMIZERS: tuple[Optimizer, ...] = ("sgd", "adam")


@dataclass(frozen=True)
class DpSgdConfig:
    """Record-level DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy"):
    per-sample gradients clipped to ``max_grad_norm`` C, Gaussian noise of std
    ``noise_multiplier * C`` (sigma C) added to their sum, Poisson sampling with rate
    q = batch_size / n. The (epsilon, delta) spent follows from sigma, q and the step count.
    """

    noise_multiplier: float
    max_grad_norm: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ConfigError(
                f"DP-SGD noise multiplier must be finite and > 0, got {self.noise_multiplier}"
            )
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(
                f"DP-SGD clipping bound max_grad_norm must be finite and > 0, "
                f"got {self.max_grad_norm}"
            )


@dataclass(frozen=True)
class LocalTrainConfig:
    """One node's local work in one round.

    ``steps > 0`` runs exactly that many minibatch steps (cycling through reshuffled epochs), which
    equalises compute across hospitals of different sizes; otherwise ``epochs`` full passes run.
    ``proximal_mu > 0`` adds FedProx's proximal term (Li et al., 2020). ``options`` are the plan's
    own numeric options (e.g. the MLP's ``hidden``), the same ones given to ``init_weights``.
    ``correction`` is added to each named parameter's gradient at every step (SCAFFOLD's c - c_i).
    ``dp`` switches the loop to record-level DP-SGD (``DpSgdConfig``), which excludes FedProx,
    SCAFFOLD and BatchNorm.
    """

    epochs: int
    steps: int
    batch_size: int
    optimizer: Optimizer
    learning_rate: float
    proximal_mu: float = 0.0
    seed: int = 0
    options: Mapping[str, float] = field(default_factory=dict)
    correction: Mapping[str, npt.NDArray[np.generic]] | None = None
    dp: DpSgdConfig | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.steps < 0 or (self.epochs == 0 and self.steps == 0):
            raise ConfigError(
                f"local training needs epochs > 0 or steps > 0 (got {self.epochs}, {self.steps})"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning rate must be finite and > 0, got {self.learning_rate}")
        if not (math.isfinite(self.proximal_mu) and self.proximal_mu >= 0):
            raise ConfigError(f"proximal_mu must be finite and >= 0, got {self.proximal_mu}")


@dataclass(frozen=True)
class TrainResult:
    weights: Weights
    num_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class EvalResult:
    """``histogram``: the test scores' bin counts, which sum across sites into pooled metrics
    (:mod:`medfed.training.score_histogram`); None for a plan that scores nothing."""

    num_examples: int
    metrics: dict[str, float]
    histogram: ScoreHistogram | None = None


class TrainingPlan(Protocol):
    """The contract every installed plan meets: binary classification, tables or images."""

    name: str
    version: str

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        """Fresh weights, a pure function of the arguments."""
        ...

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        """Train from ``weights`` on ``data.x_train``; deterministic given ``config.seed``."""
        ...

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        """Metrics of ``weights`` on ``data.x_test``: ``accuracy``, ``auc``, ``loss``."""
        ...

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        """One logit per row of ``data.x_test``, through the same input preparation as
        ``evaluate`` (statistics from ``data.x_train``): how a hospital uses the model."""
        ...


def round_seed(seed: int, server_round: int) -> int:
    """The local-training seed of a round, sent by the coordinator and used by simulations, so
    both draw the same minibatch orders. Sites share it; their data, not their seed, differs."""
    return (seed * 1_000_003 + server_round) % (1 << 63)
