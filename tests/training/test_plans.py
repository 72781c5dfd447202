import dataclasses

import numpy as np
import pytest
import torch

from medfed.data.tabular import TabularDataset
from medfed.errors import ConfigError, TrainingError
from medfed.training.plan import LocalTrainConfig
from medfed.training.plans.logistic_regression import LogisticRegressionPlan
from medfed.training.plans.mlp import MlpPlan
from medfed.training.plans.passthrough import PassthroughPlan
from medfed.training.score_histogram import histogram_metrics
from tests.training.synthetic_data import synthetic

TORCH_PLANS = [(LogisticRegressionPlan(), {}), (MlpPlan(), {"hidden": 8.0})]
ids = ["logistic_regression", "mlp"]


def config(options, **changes):
    base = LocalTrainConfig(
        epochs=10, steps=0, batch_size=16, optimizer="sgd", learning_rate=0.1, seed=1,
        options=options,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def on_train_split(data):
    return TabularDataset(
        data.features, data.label, data.x_train, data.y_train, data.x_train, data.y_train
    )


def read_only(weights):
    out = {}
    for name, a in weights.items():
        view = np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)
        assert not view.flags.writeable
        out[name] = view
    return out


def distance(a, b):
    return float(sum(np.sum((a[k].astype(np.float64) - b[k]) ** 2) for k in a))


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_init_is_float32_state_dict_and_seeded(plan, options):
    w = plan.init_weights(5, 3, options)
    assert all(a.dtype == np.float32 for a in w.values())
    if isinstance(plan, MlpPlan):
        assert list(w) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert w["0.weight"].shape == (8, 5)
    else:
        assert list(w) == ["weight", "bias"]
    again = plan.init_weights(5, 3, options)
    assert all(np.array_equal(w[k], again[k]) for k in w)
    other = plan.init_weights(5, 4, options)
    assert not all(np.array_equal(w[k], other[k]) for k in w)


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_training_lowers_the_loss(plan, options, data):
    init = plan.init_weights(data.n_features, 0, options)
    seen = on_train_split(data)
    before = plan.evaluate(init, seen).metrics["loss"]
    result = plan.train(read_only(init), data, config(options))
    after = plan.evaluate(result.weights, seen).metrics["loss"]
    assert after < before * 0.8
    assert result.metrics["train_loss"] == pytest.approx(after, rel=1e-5)
    assert result.num_examples == len(data.y_train)
    assert plan.evaluate(result.weights, data).metrics["accuracy"] > 0.8


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_evaluation_histogram_counts_the_test_set_and_agrees_with_the_metrics(plan, options, data):
    result = plan.evaluate(plan.init_weights(data.n_features, 0, options), data)
    hist = result.histogram
    assert hist is not None
    assert hist.positives.sum() == int(data.y_test.sum())
    assert hist.total == len(data.y_test) == result.num_examples
    pooled = histogram_metrics(hist)  # one site: "pooled" is the site's own test set
    assert pooled["balanced_accuracy"] == pytest.approx(result.metrics["balanced_accuracy"])
    assert abs(pooled["auc"] - result.metrics["auc"]) <= pooled["auc_bin_error"] + 1e-9


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_training_is_deterministic_given_the_seed(plan, options, data):
    init = plan.init_weights(data.n_features, 0, options)
    a = plan.train(init, data, config(options)).weights
    b = plan.train(init, data, config(options)).weights
    c = plan.train(init, data, config(options, seed=2)).weights
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_fedprox_term_keeps_weights_near_the_global_model(plan, options, data):
    init = plan.init_weights(data.n_features, 0, options)
    free = plan.train(init, data, config(options)).weights
    held = plan.train(init, data, config(options, proximal_mu=5.0)).weights
    assert distance(held, init) < 0.2 * distance(free, init)


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_steps_mode_runs_exactly_that_many_steps(plan, options, data):
    init = plan.init_weights(data.n_features, 0, options)
    result = plan.train(init, data, config(options, epochs=0, steps=7, batch_size=64))
    assert result.metrics["steps"] == 7


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_adam_trains_too(plan, options, data):
    init = plan.init_weights(data.n_features, 0, options)
    cfg = config(options, optimizer="adam", learning_rate=0.05)
    result = plan.train(init, data, cfg)
    assert plan.evaluate(result.weights, data).metrics["accuracy"] > 0.8


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_standardization_uses_local_statistics(plan, options):
    """A hospital recording in other units (scale, offset) gets the same model and metrics."""
    here, there = synthetic(1), synthetic(1, shift=100.0, scale=1000.0)
    init = plan.init_weights(here.n_features, 0, options)
    a = plan.train(init, here, config(options)).weights
    b = plan.train(init, there, config(options)).weights
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4)
    ea, eb = plan.evaluate(a, here).metrics, plan.evaluate(b, there).metrics
    assert ea["accuracy"] == eb["accuracy"]
    assert ea["loss"] == pytest.approx(eb["loss"], abs=1e-4)


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_weights_that_do_not_fit_are_refused(plan, options, data):
    init = plan.init_weights(data.n_features + 1, 0, options)
    with pytest.raises(TrainingError, match="do not fit"):
        plan.train(init, data, config(options))
    good = plan.init_weights(data.n_features, 0, options)
    as_double = {k: v.astype(np.float64) for k, v in good.items()}
    with pytest.raises(TrainingError, match="do not have the model's dtypes"):
        plan.evaluate(as_double, data)


@pytest.mark.parametrize(("plan", "options"), TORCH_PLANS, ids=ids)
def test_unknown_options_are_refused(plan, options, data):
    with pytest.raises(TrainingError, match="unknown plan options"):
        plan.init_weights(data.n_features, 0, {**options, "hiden": 3.0})


def test_divergence_is_reported(data):
    plan = LogisticRegressionPlan()
    huge = synthetic(0)
    init = {"weight": np.full((1, 5), 1e38, np.float32), "bias": np.zeros(1, np.float32)}
    with pytest.raises(TrainingError, match="diverged"):
        plan.train(init, huge, config({}, learning_rate=1e30))


def test_torch_thread_state_untouched(data):
    threads = torch.get_num_threads()
    LogisticRegressionPlan().train(
        LogisticRegressionPlan().init_weights(5, 0, {}), data, config({})
    )
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(
    "changes",
    [
        {"epochs": 0, "steps": 0},
        {"batch_size": 0},
        {"optimizer": "rmsprop"},
        {"learning_rate": 0.0},
        {"learning_rate": float("nan")},
        {"proximal_mu": -1.0},
    ],
)
def test_bad_config_is_refused(changes):
    with pytest.raises(ConfigError):
        config({}, **changes)


def test_passthrough_adds_delta_without_learning(data):
    plan = PassthroughPlan()
    w = plan.init_weights(0, 0, {"dim": 10.0})
    assert list(w) == ["w"]
    np.testing.assert_array_equal(w["w"], np.zeros(10, np.float32))
    result = plan.train(read_only(w), data, config({"delta": 0.5}))
    np.testing.assert_array_equal(result.weights["w"], np.full(10, 0.5, np.float32))
    assert result.weights["w"].dtype == np.float32
    assert result.num_examples == len(data.y_train)
    assert plan.evaluate(w, data).metrics == {"loss": 0.0}


def test_passthrough_counts_an_empty_site_as_one(data):
    empty = TabularDataset(
        data.features, "y", data.x_train[:0], data.y_train[:0], data.x_test, data.y_test
    )
    plan = PassthroughPlan()
    result = plan.train(plan.init_weights(0, 0, {"dim": 3.0}), empty, config({}))
    assert result.num_examples == 1
    np.testing.assert_allclose(result.weights["w"], 0.001)


@pytest.mark.parametrize("options", [{}, {"dim": 0.0}, {"dim": 2.5}, {"dim": 3.0, "x": 1.0}])
def test_passthrough_options_are_checked(options):
    with pytest.raises(TrainingError):
        PassthroughPlan().init_weights(0, 0, options)
