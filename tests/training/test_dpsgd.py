import dataclasses
import math

import numpy as np
import pytest
import torch
from opacus.optimizers import DPOptimizer

from medfed.errors import ConfigError, TrainingError
from medfed.training.plan import DpSgdConfig, LocalTrainConfig
from medfed.training.registry import get_plan
from medfed.training.standardize import fit_standardizer, standardize
from tests.training.synthetic_data import synthetic

PLAN = get_plan("logistic_regression", "1")
N_TRAIN = 140  # synthetic(seed) keeps 70% of its 200 rows for training


def dp_config(sigma, clip, **changes):
    base = LocalTrainConfig(
        epochs=0, steps=1, batch_size=16, optimizer="sgd", learning_rate=0.1, seed=1,
        dp=DpSgdConfig(noise_multiplier=sigma, max_grad_norm=clip),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def flat(weights):
    return np.concatenate([weights["weight"].ravel(), weights["bias"].ravel()]).astype(np.float64)


def update(data, config, w0):
    return flat(PLAN.train(w0, data, config).weights) - flat(w0)


@pytest.fixture
def lot_sizes(monkeypatch):
    """Size of every lot that reached Opacus's noise step."""
    sizes = []
    add_noise = DPOptimizer.add_noise

    def counting(self):
        sizes.append(len(self.grad_samples[0]))
        add_noise(self)

    monkeypatch.setattr(DPOptimizer, "add_noise", counting)
    return sizes


@pytest.mark.parametrize(
    ("sigma", "clip"),
    [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (1.0, 0.0), (1.0, -2.0), (1.0, math.inf)],
)
def test_dp_config_refuses_non_positive_or_non_finite(sigma, clip):
    with pytest.raises(ConfigError):
        DpSgdConfig(noise_multiplier=sigma, max_grad_norm=clip)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_dp_training_with_negligible_noise_learns(optimizer):
    data = synthetic(0, n=400)
    lr = 0.5 if optimizer == "sgd" else 0.05
    config = dp_config(1e-6, 1e6, steps=200, batch_size=32, optimizer=optimizer, learning_rate=lr)
    result = PLAN.train(PLAN.init_weights(5, 0, {}), data, config)
    assert PLAN.evaluate(result.weights, data).metrics["accuracy"] > 0.8
    assert result.metrics["train_loss"] < result.metrics["initial_loss"]


@pytest.mark.parametrize("clip", [1e-3, 0.3, 100.0])
def test_one_full_lot_step_matches_numpy_per_sample_clipping(clip):
    # batch_size = n gives q = 1: every row is in the lot, and the lot's expected size is n.
    # DP-SGD step (Abadi et al. 2016, Alg. 1) with sigma ~ 0:
    #   w1 = w0 - lr * sum_i g_i * min(1, C / ||g_i||) / n
    data = synthetic(1)
    w0 = PLAN.init_weights(5, 2, {})
    lr = 1.0
    config = dp_config(1e-9, clip, batch_size=N_TRAIN, learning_rate=lr)
    mean, std = fit_standardizer(data.x_train)
    x = np.hstack([standardize(data.x_train, mean, std), np.ones((N_TRAIN, 1), np.float32)])
    x = x.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-(x @ flat(w0))))
    per_sample = (p - data.y_train)[:, None] * x
    norms = np.linalg.norm(per_sample, axis=1)
    clipped = per_sample * np.minimum(1.0, clip / norms)[:, None]
    expected = -lr * clipped.sum(axis=0) / N_TRAIN

    got = update(data, config, w0)

    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(got) <= lr * clip * (1 + 1e-4)  # |lot| = n = expected lot size
    if clip < norms.min():  # every row clipped: a batch-level clip would give a different step
        batch_clipped = per_sample.mean(axis=0)
        batch_clipped *= min(1.0, clip / np.linalg.norm(batch_clipped))
        assert not np.allclose(got, -lr * batch_clipped, rtol=1e-2)


def test_noise_has_std_sigma_c_over_expected_lot_size():
    # C is so small that the clipped sum (<= n C) vanishes next to the noise sigma C = 1e-3.
    data = synthetic(2)
    w0 = PLAN.init_weights(5, 0, {})
    sigma, clip, lr = 1e6, 1e-9, 10.0
    config = dp_config(sigma, clip, batch_size=N_TRAIN, learning_rate=lr)
    noise = np.concatenate([update(data, config, w0) * N_TRAIN / lr for _ in range(100)])
    assert abs(noise.mean()) < 4 * sigma * clip / math.sqrt(noise.size)
    assert noise.std() == pytest.approx(sigma * clip, rel=0.15)


def test_noise_is_secret_while_lots_follow_the_seed():
    data = synthetic(3)
    w0 = PLAN.init_weights(5, 0, {})
    noisy = dp_config(1.0, 1.0, steps=5)
    torch.manual_seed(0)  # the global RNG must not be the noise source either
    first = update(data, noisy, w0)
    torch.manual_seed(0)
    second = update(data, noisy, w0)
    assert np.abs(first - second).max() > 1e-3

    # With the noise negligible, the same seed draws the same lots, another seed other lots.
    quiet = dp_config(1e-7, 0.5, steps=30)
    a, b = update(data, quiet, w0), update(data, quiet, w0)
    other = update(data, dataclasses.replace(quiet, seed=2), w0)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.abs(a - other).max() > 1e-3


def test_lots_are_poisson_with_expected_size_batch_size(lot_sizes):
    result = PLAN.train(PLAN.init_weights(5, 0, {}), synthetic(4), dp_config(1.0, 1.0, steps=300))
    assert result.metrics["steps"] == 300 == len(lot_sizes)
    assert result.metrics["dp_sample_rate"] == pytest.approx(16 / N_TRAIN)
    assert result.metrics["dp_noise_multiplier"] == 1.0
    sizes = np.array(lot_sizes)
    # Binomial(n, q): mean 16, variance 16 (1 - q) ~ 14.2; the mean of 300 has sd ~0.22.
    assert sizes.mean() == pytest.approx(16, abs=1.0)
    assert 8 < sizes.var() < 22


def test_empty_lots_are_still_noisy_steps(lot_sizes):
    data = synthetic(5)
    w0 = PLAN.init_weights(5, 0, {})
    result = PLAN.train(w0, data, dp_config(1.0, 1.0, steps=60, batch_size=1))
    assert result.metrics["steps"] == 60 == len(lot_sizes)
    assert 0 in lot_sizes  # q = 1/140: about a third of the lots are empty
    assert result.metrics["dp_sample_rate"] == pytest.approx(1 / N_TRAIN)


def test_epochs_count_steps_as_without_dp_and_rate_caps_at_one(lot_sizes):
    data = synthetic(6)
    w0 = PLAN.init_weights(5, 0, {})
    by_epochs = PLAN.train(w0, data, dp_config(1.0, 1.0, steps=0, epochs=2))
    assert by_epochs.metrics["steps"] == 2 * math.ceil(N_TRAIN / 16) == len(lot_sizes)
    whole = PLAN.train(w0, data, dp_config(1.0, 1.0, steps=3, batch_size=1000))
    assert whole.metrics["dp_sample_rate"] == 1.0
    assert lot_sizes[-3:] == [N_TRAIN] * 3


@pytest.mark.parametrize(
    ("plan", "options", "changes", "message"),
    [
        ("logistic_regression", {}, {"proximal_mu": 0.1}, "FedProx"),
        ("logistic_regression", {}, {"correction": "zeros"}, "SCAFFOLD"),
        ("mlp", {"batch_norm": 1.0, "hidden": 4.0}, {}, "BatchNorm"),
    ],
    ids=["fedprox", "scaffold", "batch_norm"],
)
def test_dp_refuses_what_per_sample_clipping_cannot_cover(plan, options, changes, message):
    trained = get_plan(plan, "1")
    w0 = trained.init_weights(5, 0, options)
    if changes.get("correction") == "zeros":
        changes = {"correction": {k: np.zeros_like(a) for k, a in w0.items()}}
    config = dp_config(1.0, 1.0, options=options, **changes)
    with pytest.raises(TrainingError, match=message):
        trained.train(w0, synthetic(7), config)


def test_mlp_without_batch_norm_trains_under_dp():
    mlp = get_plan("mlp", "1")
    options = {"hidden": 4.0}
    result = mlp.train(
        mlp.init_weights(5, 0, options), synthetic(8), dp_config(1.0, 1.0, steps=5, options=options)
    )
    assert result.metrics["steps"] == 5
    assert all(np.isfinite(a).all() for a in result.weights.values())
