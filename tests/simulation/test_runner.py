import numpy as np
import pytest

import medfed.simulation.runner as runner
from medfed.coordinator.spec import StudySpec
from medfed.errors import TrainingError
from medfed.simulation.runner import simulate
from medfed.training.plan import LocalTrainConfig, TrainResult, round_seed
from medfed.training.registry import get_plan
from tests.training.synthetic_data import synthetic

SITES = {"b": synthetic(2, n=40), "a": synthetic(1, n=20)}  # 28 and 14 training rows


def spec(**overrides):
    fields = {
        "name": "sim",
        "dataset": "synthetic",
        "features": tuple(f"f{i}" for i in range(5)),
        "label": "y",
        "plan": "passthrough",
        "plan_version": "1",
        "rounds": 3,
        "plan_options": {"dim": 6, "delta": 0.25},
    }
    return StudySpec(**(fields | overrides))


def zeros(dim):
    return get_plan("passthrough", "1").init_weights(5, 0, {"dim": dim})


def test_fedavg_of_passthrough_adds_delta_every_round():
    sim = simulate(spec(), SITES, zeros(6))
    assert len(sim.history) == 3
    for server_round, model in enumerate(sim.history, start=1):
        assert model["w"].dtype == np.float32
        np.testing.assert_allclose(model["w"], np.full(6, 0.25 * server_round), rtol=1e-7)
    np.testing.assert_array_equal(sim.model["w"], sim.history[-1]["w"])


class RecordingPlan:
    """Passthrough that records which site trained with which config."""

    name = "passthrough"
    version = "1"

    def __init__(self):
        self.calls = []

    def init_weights(self, n_features, seed, options):
        return zeros(int(options["dim"]))

    def train(self, weights, data, config):
        self.calls.append((len(data.y_train), config))
        return TrainResult({"w": weights["w"] + np.float32(1)}, len(data.y_train), {})

    def evaluate(self, weights, data):
        raise AssertionError("not used")


def test_each_round_sends_its_seed_and_fedprox_mu(monkeypatch):
    plan = RecordingPlan()
    monkeypatch.setattr(runner, "get_plan", lambda name, version: plan)
    study = spec(strategy="fedprox", strategy_params={"mu": 0.3}, seed=11, learning_rate=0.05)
    simulate(study, SITES, zeros(6))
    assert len(plan.calls) == 6
    seeds = []
    for index, (rows, config) in enumerate(plan.calls):
        server_round = index // 2 + 1
        assert rows == (14 if index % 2 == 0 else 28)  # sites train in name order
        assert config.seed == round_seed(11, server_round)
        assert config.proximal_mu == 0.3
        assert config.learning_rate == 0.05
        assert dict(config.options) == {"dim": 6, "delta": 0.25}
        seeds.append(config.seed)
    assert len(set(seeds)) == 3


def test_tamper_replaces_a_sites_model():
    seen = []

    def tamper(server_round, models, global_model):
        seen.append((server_round, {k: v["w"].copy() for k, v in models.items()}, global_model))
        return {"a": {"w": np.full(6, 100.0, np.float32)}} if server_round == 1 else {}

    sim = simulate(spec(rounds=2), SITES, zeros(6), tamper=tamper)
    first = np.average([100.0, 0.25], weights=[14, 28])
    np.testing.assert_allclose(sim.history[0]["w"], np.full(6, first), rtol=1e-6)
    np.testing.assert_allclose(sim.history[1]["w"], np.full(6, first + 0.25), rtol=1e-6)
    (r1, models1, global1), (r2, models2, _) = seen
    assert (r1, r2) == (1, 2)
    assert sorted(models1) == ["a", "b"]
    np.testing.assert_array_equal(models1["a"], np.full(6, 0.25, np.float32))
    np.testing.assert_array_equal(global1["w"], np.zeros(6, np.float32))
    np.testing.assert_allclose(models2["b"], np.full(6, first + 0.25), rtol=1e-6)


def test_upload_bytes_are_recorded_and_q8_sends_less():
    dim = 1000
    options = {"dim": dim, "delta": 0.25}
    dense = simulate(spec(rounds=2, plan_options=options), SITES, zeros(dim))
    small = simulate(spec(rounds=2, plan_options=options, compression="q8"), SITES, zeros(dim))
    assert dense.upload_bytes == [2 * 4 * dim] * 2
    assert small.upload_bytes == [2 * (dim + 8)] * 2  # uint8 codes + (lo, scale) per site
    assert all(s < d for s, d in zip(small.upload_bytes, dense.upload_bytes, strict=True))
    for server_round, model in enumerate(small.history, start=1):
        np.testing.assert_allclose(model["w"], np.full(dim, 0.25 * server_round), rtol=1e-6)


def test_cyclic_trains_one_site_per_round():
    sim = simulate(spec(rounds=4, strategy="cyclic"), SITES, zeros(6))
    assert sim.upload_bytes == [4 * 6] * 4
    for server_round, model in enumerate(sim.history, start=1):
        np.testing.assert_allclose(model["w"], np.full(6, 0.25 * server_round), rtol=1e-7)


def test_a_simulation_needs_a_site():
    with pytest.raises(TrainingError, match="at least one site"):
        simulate(spec(), {}, zeros(6))


def test_scaffold_simulation_moves_the_control_variate_by_the_sites_drift():
    study = spec(
        plan="logistic_regression", plan_options={}, strategy="scaffold", rounds=1,
        local_steps=3, batch_size=8, learning_rate=0.1, seed=5,
    )  # fmt: skip
    plan = get_plan("logistic_regression", "1")
    init = plan.init_weights(5, 0, {})
    rounds_seen = []
    sim = simulate(study, SITES, init, after_round=lambda r, s: rounds_seen.append(r))
    assert rounds_seen == [1]

    config = LocalTrainConfig(
        epochs=1, steps=3, batch_size=8, optimizer="sgd", learning_rate=0.1,
        seed=round_seed(5, 1),
    )  # fmt: skip
    trained = {name: plan.train(init, data, config) for name, data in sorted(SITES.items())}
    sizes = [t.num_examples for t in trained.values()]
    for name, value in init.items():
        ys = np.stack([np.asarray(t.weights[name], np.float64) for t in trained.values()])
        want_model = np.average(ys, axis=0, weights=sizes)
        want_c = ((np.asarray(value, np.float64) - ys) / (3 * 0.1)).mean(axis=0)
        np.testing.assert_allclose(sim.model[name], want_model, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sim.state[f"scaffold/c/{name}"], want_c, rtol=1e-4, atol=1e-5)


def test_max_site_weight_caps_a_site_as_the_engine_does():
    sites = SITES | {"c": synthetic(3, n=200)}  # 140 training rows against 28 + 14

    def tamper(server_round, models, global_model):
        return {"c": {"w": np.full(6, 1.0, np.float32)}}

    sim = simulate(spec(rounds=1, max_site_weight=0.5, min_nodes=2), sites, zeros(6), tamper)

    capped = np.average([1.0, 0.25, 0.25], weights=[42, 28, 14])  # c weighs as much as a + b
    np.testing.assert_allclose(sim.model["w"], np.full(6, capped), rtol=1e-6)
