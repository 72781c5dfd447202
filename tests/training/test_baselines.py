import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest

import medfed.data
from medfed.coordinator.spec import load_spec
from medfed.data.heart_disease import HEART_FEATURES, heart_disease_centres
from medfed.errors import TrainingError
from medfed.simulation.runner import simulate
from medfed.strategies.registry import make_strategy
from medfed.training.baselines import (
    evaluate_everywhere,
    pooled_accuracy,
    same_compute,
    train_local,
    train_pooled,
)
from medfed.training.plan import EvalResult, LocalTrainConfig
from medfed.training.registry import get_plan
from tests.training.synthetic_data import synthetic

STUDY = Path(medfed.data.__file__).parent / "builtin" / "heart_disease_study.toml"


def study():
    return tomllib.loads(STUDY.read_text())


def study_config(spec, seed):
    return LocalTrainConfig(
        epochs=spec["local_epochs"],
        steps=spec["local_steps"],
        batch_size=spec["batch_size"],
        optimizer=spec["optimizer"],
        learning_rate=spec["learning_rate"],
        seed=seed,
        options=spec["plan"].get("options", {}),
    )


def test_demo_study_spec_is_complete():
    spec = study()
    assert spec["dataset"]["features"] == list(HEART_FEATURES)
    assert spec["dataset"]["label"] == "target"
    assert spec["rounds"] <= 20
    assert spec["min_nodes"] == 3
    get_plan(spec["plan"]["name"], spec["plan"]["version"])
    make_strategy(spec["strategy"]["name"], spec["strategy"].get("params", {}))


def test_demo_defaults_beat_every_single_hospital():
    spec = study()
    centres = heart_disease_centres()
    plan = get_plan(spec["plan"]["name"], spec["plan"]["version"])
    config = study_config(spec, spec["seed"])
    init = plan.init_weights(len(HEART_FEATURES), spec["seed"], config.options)
    sim = simulate(load_spec(STUDY), centres, init)
    assert len(sim.history) == spec["rounds"]
    fed_accuracy = pooled_accuracy(evaluate_everywhere(plan, sim.model, centres))
    alone = same_compute(config, spec["rounds"])
    for key, data in centres.items():
        local = train_local(data, plan, alone, init)
        assert fed_accuracy > pooled_accuracy(evaluate_everywhere(plan, local, centres)), key


def test_same_compute_multiplies_local_work():
    config = LocalTrainConfig(epochs=2, steps=0, batch_size=8, optimizer="sgd", learning_rate=0.1)
    assert same_compute(config, 5).epochs == 10
    stepped = dataclasses.replace(config, epochs=0, steps=3)
    assert same_compute(stepped, 4).steps == 12
    with pytest.raises(TrainingError):
        same_compute(config, 0)


def test_pooled_accuracy_is_accuracy_on_the_union():
    results = {
        "a": EvalResult(num_examples=10, metrics={"accuracy": 0.5}),
        "b": EvalResult(num_examples=30, metrics={"accuracy": 1.0}),
    }
    assert pooled_accuracy(results) == pytest.approx((5 + 30) / 40)
    with pytest.raises(TrainingError):
        pooled_accuracy({})


def test_pooled_baseline_ignores_each_sites_units():
    plan = get_plan("logistic_regression", "1")
    config = LocalTrainConfig(epochs=3, steps=0, batch_size=16, optimizer="sgd", learning_rate=0.1)
    init = plan.init_weights(5, 0, {})
    same_units = {"a": synthetic(1), "b": synthetic(2)}
    other_units = {"a": synthetic(1), "b": synthetic(2, shift=50.0, scale=100.0)}
    a = train_pooled(same_units, plan, config, init)
    b = train_pooled(other_units, plan, config, init)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4)
    assert set(evaluate_everywhere(plan, a, same_units)) == {"a", "b"}
