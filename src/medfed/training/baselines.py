"""Non-federated references, to judge what federation buys.

* *local*: one hospital trains alone on its own data;
* *pooled*: all training rows in one place, the upper bound federation aims at;
(The federated side without a network is ``medfed.simulation``.)

Same compute: a federation of R rounds x E local epochs passes over each site's data R x E times,
so the baselines get ``same_compute(config, rounds)``, i.e. R x E epochs (or R x steps steps).
Every model is scored on each centre's test split with that centre's standardization, the way a
federated evaluation does it; ``pooled_accuracy`` weights centres by test size, which is the
accuracy on the union of the test splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from medfed.data.tabular import TabularDataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.metrics import roc_auc
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainingPlan
from medfed.training.standardize import fit_standardizer, standardize


def same_compute(config: LocalTrainConfig, rounds: int) -> LocalTrainConfig:
    """The local config scaled to a whole federation's worth of passes over the data."""
    if rounds < 1:
        raise TrainingError(f"rounds must be >= 1, got {rounds}")
    return dataclasses.replace(config, epochs=config.epochs * rounds, steps=config.steps * rounds)


def train_local(
    data: TabularDataset, plan: TrainingPlan, config: LocalTrainConfig, init: Weights
) -> Weights:
    return plan.train(init, data, config).weights


def train_pooled(
    centres: Mapping[str, TabularDataset],
    plan: TrainingPlan,
    config: LocalTrainConfig,
    init: Weights,
) -> Weights:
    """Train on the union of the training splits, each first standardized by its own centre.

    Pooling site-standardized rows gives the pooled model the same inputs the federated model
    sees; the plan's own standardization of the pool is then (almost) the identity.
    """
    return plan.train(init, _pool(centres), config).weights


def evaluate_everywhere(
    plan: TrainingPlan, weights: Weights, centres: Mapping[str, TabularDataset]
) -> dict[str, EvalResult]:
    return {key: plan.evaluate(weights, data) for key, data in centres.items()}


def pooled_accuracy(results: Mapping[str, EvalResult]) -> float:
    total = sum(r.num_examples for r in results.values())
    if total == 0:
        raise TrainingError("no test examples to score")
    return sum(r.metrics["accuracy"] * r.num_examples for r in results.values()) / total


def pooled_auc(
    plan: TrainingPlan, weights: Weights, centres: Mapping[str, TabularDataset]
) -> float:
    """The exact AUC over the union of the centres' test splits: every positive of every centre
    ranked against every negative of every centre, each centre's rows scored with its own
    standardization. Not the mean of the centres' AUCs, which never compares two centres'
    patients; the federated evaluation's ``auc_pooled`` approximates this from histograms."""
    y = np.concatenate([data.y_test for data in centres.values()])
    scores = np.concatenate([plan.predict(weights, data) for data in centres.values()])
    return roc_auc(y, scores)


def _pool(centres: Mapping[str, TabularDataset]) -> TabularDataset:
    if not centres:
        raise TrainingError("no centres to pool")
    xs_train, xs_test = [], []
    for data in centres.values():
        mean, std = fit_standardizer(data.x_train)
        xs_train.append(standardize(data.x_train, mean, std))
        xs_test.append(standardize(data.x_test, mean, std))
    first = next(iter(centres.values()))
    return TabularDataset(
        features=first.features,
        label=first.label,
        x_train=np.concatenate(xs_train),
        y_train=np.concatenate([d.y_train for d in centres.values()]),
        x_test=np.concatenate(xs_test),
        y_test=np.concatenate([d.y_test for d in centres.values()]),
    )
