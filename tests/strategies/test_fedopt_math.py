import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.errors import StrategyError
from medfed.strategies.fedopt_math import ServerOptimizerConfig, initial_state, server_step

SHAPES = {"fc.weight": (3, 2), "fc.bias": (2,)}


def reference_step(kind, lr, b1, b2, tau, x, d, m, v):
    """Algorithm 2 of Reddi et al. (2021), one scalar at a time in plain Python."""
    m = b1 * m + (1 - b1) * d
    if kind == "adagrad":
        v = v + d * d
    elif kind == "yogi":
        gap = v - d * d
        sign = 1.0 if gap > 0 else (-1.0 if gap < 0 else 0.0)
        v = v - (1 - b2) * d * d * sign
    else:
        v = b2 * v + (1 - b2) * d * d
    return x + lr * m / (math.sqrt(v) + tau), m, v


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
@pytest.mark.parametrize("start", ["zeros", "tau_squared"])
def test_five_steps_match_a_scalar_reference(kind, start):
    rng = np.random.default_rng(7)
    config = ServerOptimizerConfig(kind=kind, learning_rate=0.05, beta1=0.8, beta2=0.95, tau=1e-2)
    x = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    if start == "zeros":
        m = {name: np.zeros(shape) for name, shape in SHAPES.items()}
        v = {name: np.zeros(shape) for name, shape in SHAPES.items()}
    else:
        m, v = initial_state(x, config.tau)
    # per scalar: [x, m, v]
    ref = {
        name: np.stack([x[name], m[name], v[name]], axis=-1).reshape(-1, 3).tolist()
        for name in SHAPES
    }
    for _ in range(5):
        delta = {name: rng.normal(0, 0.3, shape) for name, shape in SHAPES.items()}
        x, m, v = server_step(config, x, delta, m, v)
        for name in SHAPES:
            ref[name] = [
                reference_step(kind, 0.05, 0.8, 0.95, 1e-2, xs, d, ms, vs)
                for (xs, ms, vs), d in zip(ref[name], delta[name].ravel().tolist(), strict=True)
            ]
    for name, shape in SHAPES.items():
        expected = np.array(ref[name]).reshape(*shape, 3)
        for i, got in enumerate((x, m, v)):
            assert got[name].dtype == np.float64 and got[name].shape == shape
            np.testing.assert_allclose(got[name], expected[..., i], rtol=1e-12, atol=1e-15)


def test_adam_first_step_known_answer():
    config = ServerOptimizerConfig(kind="adam", learning_rate=1.0)
    zero = {"w": np.zeros(2)}
    x, m, v = server_step(config, zero, {"w": np.array([1.0, -2.0])}, zero, zero)
    np.testing.assert_allclose(m["w"], [0.1, -0.2])
    np.testing.assert_allclose(v["w"], [0.01, 0.04])
    np.testing.assert_allclose(x["w"], [0.1 / (0.1 + 1e-3), -0.2 / (0.2 + 1e-3)])


deltas = st.lists(hnp.arrays(np.float64, 4, elements=st.floats(-1e3, 1e3)), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(deltas)
def test_adagrad_second_moment_never_decreases(steps):
    config = ServerOptimizerConfig(kind="adagrad", learning_rate=0.1)
    x = {"w": np.zeros(4)}
    m, v = initial_state(x, config.tau)
    for delta in steps:
        before = v["w"]
        x, m, v = server_step(config, x, {"w": delta}, m, v)
        assert np.all(v["w"] >= before)


@settings(max_examples=100, deadline=None)
@given(deltas, st.floats(0.0, 0.999))
def test_yogi_second_moment_stays_non_negative(steps, beta2):
    config = ServerOptimizerConfig(kind="yogi", learning_rate=0.1, beta2=beta2)
    x = {"w": np.zeros(4)}
    m, v = initial_state(x, config.tau)
    for delta in steps:
        x, m, v = server_step(config, x, {"w": delta}, m, v)
        assert np.all(v["w"] >= 0)
        assert np.all(np.isfinite(x["w"]))


def test_initial_state_is_zero_and_tau_squared():
    x = {"a": np.ones((2, 2), np.float32), "b": np.ones((), np.int64)}
    m, v = initial_state(x, 1e-3)
    assert list(m) == list(v) == ["a", "b"]
    for name, array in x.items():
        assert m[name].shape == v[name].shape == array.shape
        assert m[name].dtype == v[name].dtype == np.float64
        assert not np.any(m[name])
        np.testing.assert_array_equal(v[name], np.full(array.shape, 1e-6))


def test_config_is_frozen():
    config = ServerOptimizerConfig(kind="yogi", learning_rate=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learning_rate = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "sgd"}, "kind"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"learning_rate": True}, "learning_rate"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta1": -0.1}, "beta1"),
        ({"beta2": 1.5}, "beta2"),
        ({"tau": 0.0}, "tau"),
        ({"tau": math.inf}, "tau"),
    ],
)
def test_config_rejects_bad_values(changes, field):
    values = {"kind": "adam", "learning_rate": 0.1} | changes
    with pytest.raises(StrategyError, match=field):
        ServerOptimizerConfig(**values)


def test_server_step_rejects_bad_state():
    config = ServerOptimizerConfig(kind="adam", learning_rate=0.1)
    x = {"w": np.zeros(3)}
    zeros = {"w": np.zeros(3)}
    with pytest.raises(StrategyError, match="delta"):
        server_step(config, x, {"w": np.zeros(4)}, zeros, zeros)
    with pytest.raises(StrategyError, match="m has a different layout"):
        server_step(config, x, zeros, {"v": np.zeros(3)}, zeros)
    with pytest.raises(StrategyError, match="NaN or infinity"):
        server_step(config, x, {"w": np.array([0.0, np.inf, 0.0])}, zeros, zeros)
    with pytest.raises(StrategyError, match="v must be >= 0"):
        server_step(config, x, zeros, zeros, {"w": np.array([0.0, -1.0, 0.0])})
    with pytest.raises(StrategyError, match="tau"):
        initial_state(x, 0.0)
    with pytest.raises(StrategyError, match="overflowed"):
        server_step(config, x, {"w": np.full(3, 1e200)}, zeros, zeros)
