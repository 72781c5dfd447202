import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.errors import StrategyError
from medfed.strategies.normalized import (
    fednova,
    fednova_from_sums,
    qfedavg,
    qfedavg_from_sums,
    qfedavg_terms,
)

SHAPES = {"layer.weight": (3, 2), "layer.bias": (2,), "temperature": ()}


def random_round(rng, k):
    x = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    models = [
        {
            name: (x[name] + rng.normal(0, 0.5, shape)).astype(np.float32)
            for name, shape in SHAPES.items()
        }
        for _ in range(k)
    ]
    return x, models


def reference_fednova(x, models, n, tau):
    """Wang et al. (2020) eq. 6-7 with a_i = tau_i, tensor by tensor."""
    total = sum(n)
    p = [n_i / total for n_i in n]
    tau_eff = sum(p_i * t_i for p_i, t_i in zip(p, tau, strict=True))
    out = {}
    for name in SHAPES:
        xs = np.asarray(x[name], np.float64)
        direction = sum(
            p_i * (xs - np.asarray(y[name], np.float64)) / t_i
            for p_i, y, t_i in zip(p, models, tau, strict=True)
        )
        out[name] = xs - tau_eff * direction
    return out


def reference_qfedavg(x, models, losses, q, lip):
    """Li et al. (2020) Algorithm 2 (q-FedAvg), client by client."""
    deltas, hs = [], []
    for y, loss in zip(models, losses, strict=True):
        dw = {name: lip * (np.float64(x[name]) - np.float64(y[name])) for name in SHAPES}
        squared = sum(float(np.sum(a**2)) for a in dw.values())
        deltas.append({name: loss**q * a for name, a in dw.items()})
        hs.append(q * loss ** (q - 1) * squared + lip * loss**q)
    return {name: np.float64(x[name]) - sum(d[name] for d in deltas) / sum(hs) for name in SHAPES}


def test_fednova_matches_the_reference_with_unequal_local_steps():
    rng = np.random.default_rng(11)
    x, models = random_round(rng, 5)
    n = [120.0, 30.0, 500.0, 75.0, 9.0]
    tau = [10.0, 3.0, 50.0, 8.0, 1.0]
    got = fednova(x, models, n, tau)
    expected = reference_fednova(x, models, n, tau)
    for name, shape in SHAPES.items():
        assert got[name].dtype == np.float64 and got[name].shape == shape
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-12)


def test_fednova_known_answer_differs_from_fedavg():
    x = {"w": np.array([0.0])}
    models = [{"w": np.array([1.0])}, {"w": np.array([2.0])}]
    # p = (1/2, 1/2); d = (-1, -1/2); tau_eff = 5/2; x_new = 5/2 * 3/4. FedAvg would give 1.5.
    assert fednova(x, models, [1, 1], [1, 4])["w"][0] == pytest.approx(1.875, rel=1e-15)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            hnp.arrays(np.float64, (k + 1, 4), elements=st.floats(-1e3, 1e3)),
            st.lists(st.floats(1.0, 1e5), min_size=k, max_size=k),
        )
    ),
    st.floats(1.0, 1e3),
)
def test_fednova_with_equal_steps_is_example_weighted_fedavg(data, steps):
    arrays, n = data
    x, models = {"w": arrays[0]}, [{"w": row} for row in arrays[1:]]
    got = fednova(x, models, n, [steps] * len(n))["w"]
    expected = np.average(arrays[1:], axis=0, weights=n)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_fednova_from_sums_matches_fednova():
    rng = np.random.default_rng(12)
    for k in (1, 3, 6):
        x, models = random_round(rng, k)
        n = rng.uniform(1, 1000, k)
        tau = rng.integers(1, 100, k).astype(float)
        omega = n / tau
        weighted_mean_y = {
            name: np.average(np.stack([m[name] for m in models]), axis=0, weights=omega)
            for name in SHAPES
        }
        tau_eff = float(np.sum(n * tau) / np.sum(n))
        streamed = fednova_from_sums(
            x, weighted_mean_y, float(omega.sum()), float(n.sum()), tau_eff
        )
        direct = fednova(x, models, list(n), list(tau))
        for name in SHAPES:
            np.testing.assert_allclose(streamed[name], direct[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 5.0])
def test_qfedavg_matches_the_reference(q):
    rng = np.random.default_rng(13)
    x, models = random_round(rng, 4)
    losses = [0.3, 1.2, 2.5, 0.05]
    got = qfedavg(x, models, losses, q=q, lipschitz=10.0)
    expected = reference_qfedavg(x, models, losses, q, 10.0)
    for name, shape in SHAPES.items():
        assert got[name].dtype == np.float64 and got[name].shape == shape
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda k: st.tuples(
            hnp.arrays(np.float64, (k + 1, 3), elements=st.floats(-1e3, 1e3)),
            st.lists(st.floats(1e-3, 1e3), min_size=k, max_size=k),
        )
    ),
    st.floats(1e-2, 1e3),
)
def test_qfedavg_with_q_zero_is_the_plain_mean(data, lip):
    arrays, losses = data
    x, models = {"w": arrays[0]}, [{"w": row} for row in arrays[1:]]
    got = qfedavg(x, models, losses, q=0.0, lipschitz=lip)["w"]
    np.testing.assert_allclose(got, arrays[1:].mean(axis=0), rtol=1e-9, atol=1e-9)


def test_qfedavg_terms_and_streaming_sums_match():
    rng = np.random.default_rng(14)
    x, models = random_round(rng, 3)
    losses, q, lip = [0.7, 1.9, 0.2], 2.0, 4.0
    sum_fq, sum_h = 0.0, 0.0
    sum_fq_y = {name: np.zeros(shape) for name, shape in SHAPES.items()}
    for y, loss in zip(models, losses, strict=True):
        fq, h = qfedavg_terms(x, y, loss, q, lip)
        squared = sum(float(np.sum((lip * (np.float64(x[k]) - y[k])) ** 2)) for k in SHAPES)
        assert fq == pytest.approx(loss**q, rel=1e-15)
        assert h == pytest.approx(q * loss ** (q - 1) * squared + lip * loss**q, rel=1e-12)
        sum_fq, sum_h = sum_fq + fq, sum_h + h
        for name in SHAPES:
            sum_fq_y[name] += fq * np.float64(y[name])
    streamed = qfedavg_from_sums(x, sum_fq_y, sum_fq, sum_h, lip)
    direct = qfedavg(x, models, losses, q, lip)
    for name in SHAPES:
        np.testing.assert_allclose(streamed[name], direct[name], rtol=1e-12, atol=1e-12)


def test_bad_inputs_raise_strategy_errors():
    x = {"w": np.zeros(2)}
    y = [{"w": np.ones(2)}, {"w": np.ones(2)}]
    with pytest.raises(StrategyError, match="zero client models"):
        fednova(x, [], [], [])
    with pytest.raises(StrategyError, match="num_examples has 1 entries"):
        fednova(x, y, [1.0], [1.0, 1.0])
    with pytest.raises(StrategyError, match=r"local_steps\[1\]"):
        fednova(x, y, [1.0, 1.0], [1.0, 0.0])
    with pytest.raises(StrategyError, match=r"num_examples\[0\]"):
        fednova(x, y, [math.nan, 1.0], [1.0, 1.0])
    with pytest.raises(StrategyError, match="client model 1"):
        fednova(x, [y[0], {"w": np.ones(3)}], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(StrategyError, match="tau_eff"):
        fednova_from_sums(x, y[0], 1.0, 1.0, 0.0)
    with pytest.raises(StrategyError, match="weighted_mean_y"):
        fednova_from_sums(x, {"v": np.ones(2)}, 1.0, 1.0, 1.0)
    with pytest.raises(StrategyError, match=r"losses\[0\]"):
        qfedavg(x, y, [0.0, 1.0], q=1.0, lipschitz=1.0)
    with pytest.raises(StrategyError, match="q must be"):
        qfedavg(x, y, [1.0, 1.0], q=-1.0, lipschitz=1.0)
    with pytest.raises(StrategyError, match="lipschitz"):
        qfedavg(x, y, [1.0, 1.0], q=1.0, lipschitz=0.0)
    with pytest.raises(StrategyError, match="overflow"):
        qfedavg_terms(x, y[0], 1e10, q=100.0, lipschitz=1.0)
    with pytest.raises(StrategyError, match="NaN or infinity"):
        qfedavg(x, [{"w": np.array([np.nan, 0.0])}], [1.0], q=1.0, lipschitz=1.0)
