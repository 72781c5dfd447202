"""Every registry strategy driven as the round engine drives it (select, start_round, add,
aggregate), each compared with the paper's formula written out in NumPy here."""

import numpy as np
import pytest

from medfed.errors import StrategyError
from medfed.protocol.tensors import manifest_of
from medfed.strategies.base import Reply
from medfed.strategies.registry import STRATEGY_NAMES, StudyContext, make_strategy

PARAMS = {
    "fedavg": {},
    "fedprox": {"mu": 0.1},
    "scaffold": {"server_learning_rate": 0.5},
    "fednova": {},
    "fedadam": {"server_learning_rate": 0.1},
    "fedyogi": {"server_learning_rate": 0.1},
    "fedadagrad": {"server_learning_rate": 0.1},
    "qfedavg": {"q": 1.0},
    "cyclic": {},
    "median": {},
    "trimmed_mean": {"trim": 1},
    "krum": {"f": 1},
    "normbound": {"max_norm": 1.0},
    "dpfedavg": {"clip_norm": 1.0, "noise_multiplier": 0.0},  # noise: test_dpfedavg.py
}
ROBUST = ("median", "trimmed_mean", "krum")
F32 = {"rtol": 1e-5, "atol": 1e-6}


def model_of(rng):
    return {
        "w": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=5),  # float64
    }


def replies_for(strategy, x, rng, count, *, sizes=None, steps=None, losses=None, spread=0.5):
    """``count`` replies near ``x``, carrying whatever the strategy asks for (SCAFFOLD's control
    change as an extra, FedNova's steps and q-FedAvg's initial loss as metrics)."""
    sizes = rng.integers(1, 100, count) if sizes is None else sizes
    steps = rng.integers(1, 20, count) if steps is None else steps
    losses = rng.uniform(0.2, 2.0, count) if losses is None else losses
    layout = strategy.reply_extras(manifest_of(x))
    out = []
    for i in range(count):
        weights = {}
        for name, value in x.items():
            if value.dtype.kind == "f":
                noise = rng.normal(scale=spread, size=value.shape)
                weights[name] = (value + noise).astype(value.dtype)
            else:
                weights[name] = value + rng.integers(-3, 4, size=value.shape, dtype=value.dtype)
        extras = {t.name: rng.normal(size=t.shape).astype(t.dtype) for t in layout.tensors}
        metrics = {"steps": float(steps[i]), "initial_loss": float(losses[i])}
        out.append(Reply(f"site{i}", weights, int(sizes[i]), metrics, extras))
    return out


def run_round(strategy, x, state, replies, server_round=1, eligible=None):
    nodes = [r.node for r in replies] if eligible is None else eligible
    strategy.select(server_round, nodes)
    acc = strategy.start_round(x, state)
    for reply in replies:
        acc.add(reply)
    assert acc.count == len(replies)
    return strategy.aggregate(server_round, acc, x, state)


def stack(replies, name):
    return np.stack([np.asarray(r.weights[name], np.float64) for r in replies])


def flat(weights):
    return np.concatenate([np.asarray(weights[k], np.float64).ravel() for k in ("w", "b")])


def assert_model(got, want):
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == (np.float32 if name == "w" else np.float64)
        np.testing.assert_allclose(got[name], value, **F32)


def test_the_parameter_table_covers_every_registry_strategy():
    assert set(PARAMS) == set(STRATEGY_NAMES)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_returns_a_finite_model_and_state_of_the_right_layout(name):
    rng = np.random.default_rng(0)
    x = model_of(rng)
    strategy = make_strategy(name, PARAMS[name])
    state = strategy.init_state(x)
    replies = replies_for(strategy, x, rng, 5)
    new, new_state = run_round(strategy, x, state, replies)
    assert manifest_of(new) == manifest_of(x)
    assert manifest_of(new_state) == manifest_of(state)
    assert all(np.isfinite(v).all() for v in new.values())


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_fedavg_and_fedprox_are_the_example_weighted_mean(name):
    rng = np.random.default_rng(1)
    x = model_of(rng)
    strategy = make_strategy(name, PARAMS[name])
    replies = replies_for(strategy, x, rng, 4)
    new, state = run_round(strategy, x, {}, replies)
    sizes = [r.num_examples for r in replies]
    want = {k: np.average(stack(replies, k), axis=0, weights=sizes) for k in x}
    assert_model(new, want)
    assert state == {}


def test_fedprox_sends_mu_every_round():
    strategy = make_strategy("fedprox", {"mu": 0.25})
    assert [strategy.configure_train(r) for r in (1, 7)] == [{"proximal_mu": 0.25}] * 2


def test_fednova_with_equal_steps_is_fedavg():
    rng = np.random.default_rng(2)
    x = model_of(rng)
    replies = replies_for(make_strategy("fednova", {}), x, rng, 4, steps=[7, 7, 7, 7])
    nova, _ = run_round(make_strategy("fednova", {}), x, {}, replies)
    avg, _ = run_round(make_strategy("fedavg", {}), x, {}, replies)
    for name in x:
        np.testing.assert_allclose(nova[name], avg[name], rtol=1e-6, atol=1e-6)


def test_fednova_with_unequal_steps_follows_the_normalized_formula():
    rng = np.random.default_rng(3)
    x = model_of(rng)
    steps = np.array([1.0, 5.0, 20.0, 3.0])
    sizes = np.array([10, 40, 25, 70])
    strategy = make_strategy("fednova", {})
    replies = replies_for(strategy, x, rng, 4, sizes=sizes, steps=steps)
    new, _ = run_round(strategy, x, {}, replies)
    p = sizes / sizes.sum()
    tau_eff = float(p @ steps)
    want = {}
    for name, value in x.items():
        tau = steps.reshape((-1,) + (1,) * value.ndim)
        d = (np.asarray(value, np.float64) - stack(replies, name)) / tau
        want[name] = value - tau_eff * np.tensordot(p, d, axes=1)
    assert_model(new, want)
    avg, _ = run_round(make_strategy("fedavg", {}), x, {}, replies)
    assert not np.allclose(new["b"], avg["b"], rtol=1e-3)


def fedopt_reference(kind, lr, beta1, beta2, tau, x, rounds):
    """Reddi et al. 2021, Algorithm 2, from m = 0 and v = tau^2, no bias correction."""
    x = {k: np.asarray(v, np.float64) for k, v in x.items()}
    m = {k: np.zeros_like(v) for k, v in x.items()}
    v = {k: np.full_like(a, tau**2) for k, a in x.items()}
    for replies in rounds:
        sizes = [r.num_examples for r in replies]
        for name in x:
            delta = np.average(stack(replies, name), axis=0, weights=sizes) - x[name]
            m[name] = beta1 * m[name] + (1 - beta1) * delta
            d2 = delta**2
            if kind == "adam":
                v[name] = beta2 * v[name] + (1 - beta2) * d2
            elif kind == "yogi":
                v[name] = v[name] - (1 - beta2) * d2 * np.sign(v[name] - d2)
            else:
                v[name] = v[name] + d2
            x[name] = x[name] + lr * m[name] / (np.sqrt(v[name]) + tau)
    return x


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
def test_fedopt_two_rounds_with_carried_state_follow_algorithm_2(kind):
    rng = np.random.default_rng(4)
    params = {"server_learning_rate": 0.1, "beta1": 0.8, "beta2": 0.95, "tau": 1e-2}
    strategy = make_strategy(f"fed{kind}", params)
    x0 = model_of(rng)
    state = strategy.init_state(x0)
    rounds = [replies_for(strategy, x0, rng, 3) for _ in range(2)]
    x = x0
    for server_round, replies in enumerate(rounds, start=1):
        x, state = run_round(strategy, x, state, replies, server_round)
    want = fedopt_reference(kind, 0.1, 0.8, 0.95, 1e-2, x0, rounds)
    for name in x0:
        np.testing.assert_allclose(x[name], want[name], rtol=1e-4, atol=1e-5)


def test_fedopt_second_round_depends_on_the_carried_state():
    rng = np.random.default_rng(5)
    strategy = make_strategy("fedadam", {"server_learning_rate": 0.1})
    x0 = model_of(rng)
    replies = replies_for(strategy, x0, rng, 3)
    x1, state1 = run_round(strategy, x0, strategy.init_state(x0), replies)
    carried, _ = run_round(strategy, x1, state1, replies, 2)
    fresh, _ = run_round(strategy, x1, strategy.init_state(x0), replies, 2)
    assert not np.allclose(carried["b"], fresh["b"])


def qfedavg_reference(x, replies, q, lip):
    xv = flat(x)
    deltas, hs = [], []
    for reply in replies:
        loss = reply.metrics["initial_loss"]
        dw = lip * (xv - flat(reply.weights))
        deltas.append(loss**q * dw)
        hs.append(q * loss ** (q - 1) * float(dw @ dw) + lip * loss**q)
    new = xv - np.sum(deltas, axis=0) / np.sum(hs)
    return {"w": new[:12].reshape(3, 4), "b": new[12:]}


@pytest.mark.parametrize("q", [0.5, 1.0, 3.0])
def test_qfedavg_follows_algorithm_2_with_losses_from_the_metrics(q):
    rng = np.random.default_rng(6)
    x = model_of(rng)
    strategy = make_strategy("qfedavg", {"q": q}, StudyContext(learning_rate=0.05))
    replies = replies_for(strategy, x, rng, 4, losses=[0.3, 1.5, 0.8, 2.5])
    new, _ = run_round(strategy, x, {}, replies)
    assert_model(new, qfedavg_reference(x, replies, q, lip=20.0))


def test_qfedavg_lipschitz_defaults_to_one_over_the_total_local_step_or_is_given():
    rng = np.random.default_rng(7)
    x = model_of(rng)
    replies = replies_for(make_strategy("qfedavg", {"q": 2.0}), x, rng, 3)
    default = make_strategy("qfedavg", {"q": 2.0}, StudyContext(learning_rate=0.25))
    stepped = make_strategy("qfedavg", {"q": 2.0}, StudyContext(learning_rate=0.05, local_steps=8))
    given = make_strategy("qfedavg", {"q": 2.0, "lipschitz": 7.0})
    assert_model(run_round(default, x, {}, replies)[0], qfedavg_reference(x, replies, 2.0, 4.0))
    assert_model(run_round(given, x, {}, replies)[0], qfedavg_reference(x, replies, 2.0, 7.0))
    assert_model(run_round(stepped, x, {}, replies)[0], qfedavg_reference(x, replies, 2.0, 2.5))


def test_qfedavg_with_q_zero_is_the_unweighted_mean():
    rng = np.random.default_rng(8)
    x = model_of(rng)
    strategy = make_strategy("qfedavg", {"q": 0.0})
    replies = replies_for(strategy, x, rng, 4, sizes=[1, 50, 3, 90])
    new, _ = run_round(strategy, x, {}, replies)
    assert_model(new, {k: stack(replies, k).mean(axis=0) for k in x})


def test_scaffold_layout_settings_and_initial_state():
    rng = np.random.default_rng(9)
    x = model_of(rng) | {"count": np.array([3], np.int64)}
    strategy = make_strategy("scaffold", {})
    state = strategy.init_state(x)
    assert list(state) == ["scaffold/c/w", "scaffold/c/b"]
    for name in ("w", "b"):
        value = state[f"scaffold/c/{name}"]
        assert value.dtype == np.float32 and value.shape == x[name].shape and not value.any()
    assert strategy.broadcast(state).keys() == state.keys()
    assert strategy.client_settings() == {"algorithm": "scaffold"}
    extras = strategy.reply_extras(manifest_of(x))
    assert [(t.name, t.dtype, t.shape) for t in extras.tensors] == [
        ("scaffold/dc/w", "float32", (3, 4)),
        ("scaffold/dc/b", "float32", (5,)),
    ]


def test_scaffold_moves_x_and_c_by_the_mean_changes_scaled_by_participation():
    rng = np.random.default_rng(10)
    x = model_of(rng)
    lr = 0.5
    strategy = make_strategy("scaffold", {"server_learning_rate": lr})
    state = {
        "scaffold/c/w": rng.normal(size=(3, 4)).astype(np.float32),
        "scaffold/c/b": rng.normal(size=5).astype(np.float32),
    }
    replies = replies_for(strategy, x, rng, 3)
    eligible = ["site0", "site1", "site2", "site3"]  # one eligible site did not reply
    new, new_state = run_round(strategy, x, state, replies, eligible=eligible)
    sizes = [r.num_examples for r in replies]
    want = {k: x[k] + lr * (np.average(stack(replies, k), axis=0, weights=sizes) - x[k]) for k in x}
    assert_model(new, want)
    for name in x:
        dc = np.stack([r.extras[f"scaffold/dc/{name}"] for r in replies]).astype(np.float64)
        expected = state[f"scaffold/c/{name}"] + (3 / 4) * dc.mean(axis=0)
        got = new_state[f"scaffold/c/{name}"]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, **F32)


def test_scaffold_reply_without_the_control_change_is_refused():
    rng = np.random.default_rng(11)
    x = model_of(rng)
    strategy = make_strategy("scaffold", {})
    acc = strategy.start_round(x, strategy.init_state(x))
    good = replies_for(strategy, x, rng, 1)[0]
    wrong_shape = {k: np.zeros(3, np.float32) for k in good.extras}
    for extras in ({}, {"scaffold/dc/w": good.extras["scaffold/dc/w"]}, wrong_shape):
        with pytest.raises(StrategyError):
            acc.add(Reply("a", good.weights, 5, {}, extras))
    assert acc.count == 0


def test_scaffold_reply_with_misnamed_extras_is_refused():
    rng = np.random.default_rng(12)
    x = model_of(rng)
    strategy = make_strategy("scaffold", {})
    acc = strategy.start_round(x, strategy.init_state(x))
    good = replies_for(strategy, x, rng, 1)[0]
    misnamed = {k.replace("/dc/", "/xx/"): v for k, v in good.extras.items()}
    with pytest.raises(StrategyError):
        acc.add(Reply("a", good.weights, 5, {}, misnamed))
    assert acc.count == 0


def test_cyclic_visits_every_site_once_per_cycle():
    strategy = make_strategy("cyclic", {}, StudyContext(seed=7))
    nodes = ["delta", "alpha", "charlie", "bravo"]
    picks = [strategy.select(r, nodes) for r in range(1, 4 * 5 + 1)]
    assert all(len(p) == 1 for p in picks)
    order = [p[0] for p in picks]
    for cycle in range(5):
        assert sorted(order[4 * cycle : 4 * cycle + 4]) == sorted(nodes)


def test_cyclic_deterministic_follows_name_order():
    strategy = make_strategy("cyclic", {"deterministic": 1}, StudyContext(seed=7))
    order = [strategy.select(r, ["c", "a", "b"])[0] for r in range(1, 8)]
    assert order == ["a", "b", "c", "a", "b", "c", "a"]


def test_cyclic_random_order_is_reproducible_from_the_seed():
    nodes = [f"site{i}" for i in range(5)]

    def order(seed):
        strategy = make_strategy("cyclic", {}, StudyContext(seed=seed))
        return [strategy.select(r, nodes)[0] for r in range(1, 31)]

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != [nodes[(r - 1) % 5] for r in range(1, 31)]


def test_cyclic_round_model_is_the_one_sites_model():
    rng = np.random.default_rng(13)
    x = model_of(rng)
    strategy = make_strategy("cyclic", {})
    reply = replies_for(strategy, x, rng, 1)[0]
    new, _ = run_round(strategy, x, {}, [reply])
    assert_model(new, reply.weights)


ROBUST_CASES = [
    ("median", {}, 5, 2),
    ("trimmed_mean", {"trim": 2}, 5, 2),
    ("krum", {"f": 2}, 7, 2),
    ("krum", {"f": 2, "m": 3}, 7, 2),
]


@pytest.mark.parametrize(("name", "params", "n", "f"), ROBUST_CASES)
@pytest.mark.parametrize("signs", [(1, 1), (1, -1)])
def test_robust_strategies_ignore_f_outliers_exactly(name, params, n, f, signs):
    rng = np.random.default_rng(14)
    honest = model_of(rng)
    strategy = make_strategy(name, params)
    replies = [Reply(f"h{i}", honest, int(rng.integers(1, 100))) for i in range(n - f)]
    for i, sign in enumerate(signs[:f]):
        attack = {k: np.full_like(v, sign * 1e6) for k, v in honest.items()}
        replies.insert(2 * i, Reply(f"bad{i}", attack, 1000))
    new, _ = run_round(strategy, model_of(rng), {}, replies)
    for key, value in honest.items():
        np.testing.assert_allclose(new[key], value, rtol=1e-12, atol=0)


def test_median_and_trimmed_mean_match_numpy_per_coordinate():
    rng = np.random.default_rng(15)
    x = model_of(rng)
    replies = replies_for(make_strategy("median", {}), x, rng, 6)
    median, _ = run_round(make_strategy("median", {}), x, {}, replies)
    trimmed, _ = run_round(make_strategy("trimmed_mean", {"trim": 2}), x, {}, replies)
    for name in x:
        values = stack(replies, name)
        np.testing.assert_allclose(median[name], np.median(values, axis=0), **F32)
        want = np.sort(values, axis=0)[2:4].mean(axis=0)
        np.testing.assert_allclose(trimmed[name], want, **F32)


@pytest.mark.parametrize("m", [1, 3])
def test_krum_keeps_the_lowest_scoring_updates(m):
    rng = np.random.default_rng(16)
    x = model_of(rng)
    strategy = make_strategy("krum", {"f": 2, "m": m})
    honest = replies_for(strategy, x, rng, 5, spread=0.01)
    far = replies_for(strategy, x, rng, 2, spread=30.0)
    replies = [honest[0], far[0], *honest[1:3], far[1], *honest[3:]]
    new, _ = run_round(strategy, x, {}, replies)
    vectors = np.stack([flat(r.weights) for r in replies])
    scores = []
    for i, v in enumerate(vectors):
        d = np.sort([np.sum((v - u) ** 2) for j, u in enumerate(vectors) if j != i])
        scores.append(d[: len(replies) - 2 - 2].sum())
    best = np.argsort(scores, kind="stable")[:m]
    assert {replies[i].node for i in best} <= {r.node for r in honest}
    want = vectors[best].mean(axis=0)
    assert_model(new, {"w": want[:12].reshape(3, 4), "b": want[12:]})


def test_normbound_scales_a_long_update_to_exactly_the_bound():
    rng = np.random.default_rng(17)
    x = model_of(rng)
    strategy = make_strategy("normbound", {"max_norm": 0.5})
    reply = replies_for(strategy, x, rng, 1, spread=3.0)[0]
    new, _ = run_round(strategy, x, {}, [reply])
    moved = flat(new) - flat(x)
    wanted = flat(reply.weights) - flat(x)
    assert np.linalg.norm(wanted) > 0.5
    assert np.linalg.norm(moved) == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(moved, wanted * 0.5 / np.linalg.norm(wanted), atol=1e-6)


def test_normbound_leaves_a_short_update_and_a_zero_update_alone():
    rng = np.random.default_rng(18)
    x = model_of(rng)
    strategy = make_strategy("normbound", {"max_norm": 100.0})
    short = replies_for(strategy, x, rng, 1, spread=0.1)[0]
    assert_model(run_round(strategy, x, {}, [short])[0], short.weights)
    zero = Reply("z", {k: v.copy() for k, v in x.items()}, 4)
    new, _ = run_round(make_strategy("normbound", {"max_norm": 1e-3}), x, {}, [zero])
    assert_model(new, x)


def test_normbound_mixes_clipped_and_unclipped_updates_by_examples():
    rng = np.random.default_rng(19)
    x = model_of(rng)
    bound = 2.0
    strategy = make_strategy("normbound", {"max_norm": bound})
    replies = [
        *replies_for(strategy, x, rng, 2, spread=0.05),
        *replies_for(strategy, x, rng, 2, spread=5.0),
    ]
    new, _ = run_round(strategy, x, {}, replies)
    total = np.zeros_like(flat(x))
    for reply in replies:
        u = flat(reply.weights) - flat(x)
        total += reply.num_examples * min(1.0, bound / np.linalg.norm(u)) * u
    want = flat(x) + total / sum(r.num_examples for r in replies)
    np.testing.assert_allclose(flat(new), want, **F32)


ROUNDING = ["fedavg", "fedprox", "fednova", "scaffold", "fedadam", "qfedavg",
            "median", "trimmed_mean", "normbound"]  # fmt: skip


@pytest.mark.parametrize("name", ROUNDING)
def test_integer_tensors_are_rounded_to_the_nearest_integer(name):
    params = PARAMS[name] | ({"server_learning_rate": 1.0} if name == "scaffold" else {})
    params = params | ({"q": 0.0} if name == "qfedavg" else {})
    params = params | ({"max_norm": 1e3} if name == "normbound" else {})
    strategy = make_strategy(name, params)
    rng = np.random.default_rng(20)
    x = model_of(rng) | {"count": np.array([0, 0], np.int64)}
    replies = replies_for(strategy, x, rng, 3, sizes=[5, 5, 5], steps=[4, 4, 4])
    counts = ([1, 10], [2, 11], [2, 13])  # mean 1.67, 11.33; median and trimmed mean 2, 11
    replies = [
        Reply(r.node, dict(r.weights) | {"count": np.array(c, np.int64)}, 5, r.metrics, r.extras)
        for r, c in zip(replies, counts, strict=True)
    ]
    new, _ = run_round(strategy, x, strategy.init_state(x), replies)
    assert new["count"].dtype == np.int64
    np.testing.assert_array_equal(new["count"], [2, 11])


@pytest.mark.parametrize(
    ("name", "params", "counts", "want"),
    [
        # x's count is 0: 0 + 0.3 * (2 - 0) = 0.6 -> 1 and 0.3 * 7 = 2.1 -> 2
        ("scaffold", {"server_learning_rate": 0.3}, [[2, 7]] * 3, [1, 2]),
        # kept middle values (2, 3, 3) and (10, 11, 11): means 2.67 -> 3 and 10.67 -> 11
        ("trimmed_mean", {"trim": 1}, [[0, 10], [2, 10], [3, 11], [3, 11], [9, 11]], [3, 11]),
    ],
)
def test_a_fractional_integer_aggregate_is_rounded_not_truncated(name, params, counts, want):
    strategy = make_strategy(name, params)
    rng = np.random.default_rng(24)
    x = model_of(rng) | {"count": np.array([0, 0], np.int64)}
    replies = [
        Reply(r.node, dict(r.weights) | {"count": np.array(c, np.int64)}, 5, r.metrics, r.extras)
        for r, c in zip(replies_for(strategy, x, rng, len(counts)), counts, strict=True)
    ]
    new, _ = run_round(strategy, x, strategy.init_state(x), replies)
    assert new["count"].dtype == np.int64
    np.testing.assert_array_equal(new["count"], want)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_registry_names_unknown_parameters(name):
    with pytest.raises(StrategyError, match="bogus_param"):
        make_strategy(name, PARAMS[name] | {"bogus_param": 1.0})


@pytest.mark.parametrize("name", [n for n in STRATEGY_NAMES if PARAMS[n]])
def test_registry_names_missing_required_parameters(name):
    required = {"scaffold": set(), "qfedavg": {"q"}}.get(name, set(PARAMS[name]))
    if not required:
        make_strategy(name, {})
        return
    with pytest.raises(StrategyError, match=sorted(required)[0]):
        make_strategy(name, {})


@pytest.mark.parametrize(
    ("name", "params"), [("trimmed_mean", {"trim": 1.5}), ("krum", {"f": 0.5})]
)
def test_registry_refuses_fractional_counts(name, params):
    with pytest.raises(StrategyError, match="whole number"):
        make_strategy(name, params)


def _bad_layouts(x):
    return {
        "missing": {"w": x["w"]},
        "extra": x | {"v": np.zeros(2, np.float32)},
        "shape": {"w": np.zeros((2, 4), np.float32), "b": x["b"]},
        "transposed": {"w": x["w"].T.copy(), "b": x["b"]},
        "dtype": {"w": x["w"].astype(np.float64), "b": x["b"]},
        "order": {"b": x["b"], "w": x["w"]},
    }


LAYOUT_CASES = [
    pytest.param(name, kind, id=f"{name}-{kind}")
    for name in STRATEGY_NAMES
    for kind in ("missing", "extra", "shape", "transposed", "dtype", "order")
]


@pytest.mark.parametrize(("name", "kind"), LAYOUT_CASES)
def test_a_reply_with_the_wrong_layout_is_refused_and_changes_nothing(name, kind):
    rng = np.random.default_rng(21)
    x = model_of(rng)
    strategy = make_strategy(name, PARAMS[name])
    state = strategy.init_state(x)
    replies = replies_for(strategy, x, rng, 5)
    clean, clean_state = run_round(strategy, x, state, replies)

    strategy.select(1, [r.node for r in replies])
    acc = strategy.start_round(x, state)
    for reply in replies[:3]:
        acc.add(reply)
    bad = replies[0]
    with pytest.raises(StrategyError):
        acc.add(Reply("bad", _bad_layouts(x)[kind], 9, bad.metrics, bad.extras))
    assert acc.count == 3
    for reply in replies[3:]:
        acc.add(reply)
    new, new_state = strategy.aggregate(1, acc, x, state)
    for got, want in ((new, clean), (new_state, clean_state)):
        assert list(got) == list(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize(("name", "metric"), [("fednova", "steps"), ("qfedavg", "initial_loss")])
def test_a_reply_without_the_needed_metric_is_refused(name, metric):
    rng = np.random.default_rng(22)
    x = model_of(rng)
    strategy = make_strategy(name, PARAMS[name])
    acc = strategy.start_round(x, {})
    reply = replies_for(strategy, x, rng, 1)[0]
    for metrics in ({}, {metric: 0.0}, {metric: float("nan")}):
        with pytest.raises(StrategyError, match=metric.split("_")[-1]):
            acc.add(Reply("a", reply.weights, 3, metrics))
    assert acc.count == 0


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_aggregating_no_replies_is_refused(name):
    x = model_of(np.random.default_rng(23))
    strategy = make_strategy(name, PARAMS[name])
    state = strategy.init_state(x)
    acc = strategy.start_round(x, state)
    with pytest.raises(StrategyError):
        strategy.aggregate(1, acc, x, state)
