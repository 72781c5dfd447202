"""DP-FedAvg: clipping, the planned noise variance in both placements, adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfed.errors import StrategyError
from medfed.privacy.accounting import gaussian_epsilon
from medfed.strategies.base import Reply
from medfed.strategies.dpfedavg import CLIP, DpFedAvg
from medfed.strategies.registry import make_strategy
from medfed.training.local_update import add_noise, clip_change

D = 4000  # coordinates: each round gives D samples of the aggregate's noise
X = {"w": np.zeros(D, np.float32)}


def _round(strategy: DpFedAvg, state, changes, below=1.0):
    """One round: every site sends x + its change; returns the new model and state."""
    strategy.select(1, [f"s{i}" for i in range(len(changes))])
    acc = strategy.start_round(X, state)
    for i, change in enumerate(changes):
        acc.add(Reply(f"s{i}", {"w": change.astype(np.float32)}, 10,
                      {"update_norm_below_clip": below}))  # fmt: skip
    return strategy.aggregate(1, acc, X, state)


def test_central_noise_has_the_planned_variance_on_zero_updates():
    z, clip, m = 1.5, 0.8, 5
    strategy = DpFedAvg(clip, z, rng=np.random.default_rng(0))
    state = strategy.init_state(X)
    model, _ = _round(strategy, state, [np.zeros(D)] * m)
    planned = (z * clip / m) ** 2
    measured = float(np.var(model["w"].astype(np.float64)))
    # sample variance of D normals: relative std sqrt(2/D) ~ 2.2 %; allow 5 sigma
    assert measured == pytest.approx(planned, rel=5 * math.sqrt(2 / D))


def test_distributed_noise_added_by_the_sites_sums_to_the_same_variance():
    z, clip, m = 1.5, 0.8, 5
    strategy = DpFedAvg(clip, z, distributed=True)
    state = strategy.init_state(X)
    strategy.select(1, [f"s{i}" for i in range(m)])
    strategy.start_round(X, state)
    std = strategy.configure_train(1)["noise_std"]
    assert std == pytest.approx(z * clip / math.sqrt(m))
    rng = np.random.default_rng(1)
    noisy = [add_noise(X, X, std, rng)["w"] for _ in range(m)]
    model, new_state = _round(strategy, state, noisy)
    measured = float(np.var(model["w"].astype(np.float64)))
    assert measured == pytest.approx((z * clip / m) ** 2, rel=5 * math.sqrt(2 / D))
    assert strategy.round_metrics(new_state)["client_noise_multiplier"] == pytest.approx(z)


def test_dropped_sites_lower_the_noise_that_is_accounted():
    z, m, survivors = 2.0, 8, 6
    strategy = DpFedAvg(1.0, z, distributed=True)
    state = strategy.init_state(X)
    strategy.select(1, [f"s{i}" for i in range(m)])
    acc = strategy.start_round(X, state)
    for i in range(survivors):
        acc.add(Reply(f"s{i}", X, 10, {}))
    _, new_state = strategy.aggregate(1, acc, X, state)
    metrics = strategy.round_metrics(new_state)
    assert metrics["client_noise_multiplier"] == pytest.approx(z * math.sqrt(survivors / m))
    expected = gaussian_epsilon(z * math.sqrt(survivors / m), 1, 1e-5)
    assert metrics["client_epsilon"] == pytest.approx(expected)


def test_the_coordinator_clips_what_it_sees_and_sites_clip_themselves():
    strategy = DpFedAvg(0.5, 0.0)
    big = np.zeros(D)
    big[0] = 10.0
    model, _ = _round(strategy, strategy.init_state(X), [big])
    assert np.linalg.norm(model["w"]) == pytest.approx(0.5, rel=1e-6)
    clipped = clip_change(X, {"w": big.astype(np.float32)}, 0.5)
    assert np.linalg.norm(clipped["w"]) <= 0.5 * (1 + 1e-6)
    zero = clip_change(X, X, 0.5)
    np.testing.assert_array_equal(zero["w"], X["w"])


@pytest.mark.parametrize(("below", "direction"), [(1.0, -1), (0.0, +1)])
def test_adaptive_clipping_moves_the_bound_toward_the_target_quantile(below, direction):
    m = 40  # the count's noise is m / 20 = 2 sites
    strategy = DpFedAvg(1.0, 0.5, adaptive=True, rng=np.random.default_rng(3))
    state = strategy.init_state(X)
    _, new_state = _round(strategy, state, [np.zeros(D)] * m, below=below)
    assert np.sign(float(new_state[CLIP][0]) - 1.0) == direction
    assert strategy.model_multiplier() > 0.5  # the count takes a share of the privacy


def test_adaptive_clipping_refuses_too_few_sites_for_its_noise():
    strategy = DpFedAvg(1.0, 1.0, adaptive=True)
    strategy.select(1, ["a", "b"])  # count noise 0.1 < z / 2
    with pytest.raises(StrategyError, match="select more sites"):
        strategy.model_multiplier()


def test_dpfedavg_from_the_registry_and_its_epsilon_after_rounds():
    strategy = make_strategy("dpfedavg", {"clip_norm": 1.0, "noise_multiplier": 1.2})
    state = strategy.init_state(X)
    for _ in range(3):
        strategy.select(1, ["a", "b"])
        acc = strategy.start_round(X, state)
        acc.add(Reply("a", X, 1, {}))
        acc.add(Reply("b", X, 1, {}))
        _, state = strategy.aggregate(1, acc, X, state)
    assert strategy.round_metrics(state)["client_epsilon"] == pytest.approx(
        gaussian_epsilon(1.2, 3, 1e-5)
    )
