import dataclasses

import numpy as np
import pytest

from medfed.compression.codec import CompressionConfig, decode, wire_manifest
from medfed.errors import TrainingError
from medfed.protocol.tensors import manifest_of
from medfed.training.local_update import (
    ClientSettings,
    MemoryClientState,
    local_bn_names,
    local_evaluate,
    local_update,
    personalized_start,
)
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult
from medfed.training.registry import get_plan
from tests.training.synthetic_data import synthetic

CONFIG = LocalTrainConfig(
    epochs=0, steps=6, batch_size=16, optimizer="sgd", learning_rate=0.2, seed=3
)


@pytest.fixture
def plan():
    return get_plan("logistic_regression", "1")


@pytest.fixture
def site():
    return synthetic(4, n=80)


@pytest.fixture
def model(plan, site):
    return plan.init_weights(site.n_features, seed=1, options={})


def update(plan, site, received, settings, state=None, config=CONFIG, seed=0):
    state = MemoryClientState() if state is None else state
    rng = np.random.default_rng(seed)
    return local_update(plan, site, received, config, settings, state, rng)


def controls(model, value):
    return {f"scaffold/c/{k}": np.full(v.shape, value, np.float32) for k, v in model.items()}


def test_default_settings_send_the_trained_model(plan, site, model):
    got = update(plan, site, model, ClientSettings())
    trained = plan.train(model, site, CONFIG)
    assert list(got.wire) == list(trained.weights)
    for name, value in trained.weights.items():
        np.testing.assert_array_equal(got.wire[name], value)
    assert got.num_examples == len(site.y_train)
    assert got.metrics["steps"] == 6.0
    assert {"train_loss", "initial_loss"} <= set(got.metrics)


def test_q8_wire_has_the_codec_layout_and_decodes_within_one_step(plan, site, model):
    compression = CompressionConfig(kind="q8")
    got = update(plan, site, model, ClientSettings(compression=compression))
    assert manifest_of(got.wire) == wire_manifest(compression, manifest_of(model))
    decoded = decode(compression, got.wire, model)
    trained = plan.train(model, site, CONFIG).weights
    for name, value in trained.items():
        delta = np.asarray(value, np.float64) - np.asarray(model[name], np.float64)
        step = (delta.max() - delta.min()) / 255  # one quantization level
        error = np.abs(np.asarray(decoded[name], np.float64) - value)
        assert (error <= step * 1.001 + 1e-6).all(), name


def test_topk_wire_keeps_the_largest_changes_and_saves_the_rest(plan, site, model):
    compression = CompressionConfig(kind="topk", topk_ratio=0.4)  # 2 of 5 weights, the bias
    state = MemoryClientState()
    got = update(plan, site, model, ClientSettings(compression=compression), state)
    assert manifest_of(got.wire) == wire_manifest(compression, manifest_of(model))
    decoded = decode(compression, got.wire, model)
    trained = plan.train(model, site, CONFIG).weights
    residual = state.load("residual")
    assert residual is not None and list(residual) == list(model)
    for name, value in trained.items():
        delta = np.asarray(value, np.float64) - np.asarray(model[name], np.float64)
        k = int(np.ceil(0.4 * delta.size))
        kept = np.argsort(-np.abs(delta.ravel()), kind="stable")[:k]
        sent = np.zeros(delta.size)
        sent[kept] = delta.ravel()[kept]
        sent = sent.reshape(delta.shape)
        np.testing.assert_allclose(decoded[name], model[name] + sent, atol=1e-6)
        np.testing.assert_allclose(residual[name], delta - sent, atol=1e-6)


def test_no_residual_is_kept_without_error_feedback(plan, site, model):
    compression = CompressionConfig(kind="topk", topk_ratio=0.4, error_feedback=False)
    state = MemoryClientState()
    update(plan, site, model, ClientSettings(compression=compression), state)
    assert state.load("residual") is None


def test_scaffold_without_the_server_control_variate_is_refused(plan, site, model):
    with pytest.raises(TrainingError, match="control variate"):
        update(plan, site, model, ClientSettings(algorithm="scaffold"))
    partial = model | {"scaffold/c/weight": np.zeros_like(model["weight"])}
    with pytest.raises(TrainingError, match="bias"):
        update(plan, site, partial, ClientSettings(algorithm="scaffold"))


def test_scaffold_correction_changes_the_trained_weights(plan, site, model):
    settings = ClientSettings(algorithm="scaffold")
    plain = update(plan, site, model | controls(model, 0.0), settings)
    corrected = update(plan, site, model | controls(model, 0.5), settings)
    assert not np.allclose(plain.wire["weight"], corrected.wire["weight"], atol=1e-3)
    np.testing.assert_array_equal(
        plain.wire["weight"], plan.train(model, site, CONFIG).weights["weight"]
    )


def test_scaffold_trains_with_c_minus_c_i_and_sends_the_change_of_c_i(plan, site, model):
    rng = np.random.default_rng(7)
    c = {k: rng.normal(scale=0.1, size=v.shape).astype(np.float32) for k, v in model.items()}
    c_i = {k: rng.normal(scale=0.1, size=v.shape).astype(np.float32) for k, v in model.items()}
    state = MemoryClientState()
    state.save("scaffold", c_i)
    received = model | {f"scaffold/c/{k}": v for k, v in c.items()}
    got = update(plan, site, received, ClientSettings(algorithm="scaffold"), state)

    correction = {k: c[k] - c_i[k] for k in c}
    y = plan.train(model, site, dataclasses.replace(CONFIG, correction=correction)).weights
    steps = got.metrics["steps"]
    assert steps == 6.0
    assert list(got.wire) == ["weight", "bias", "scaffold/dc/weight", "scaffold/dc/bias"]
    saved = state.load("scaffold")
    for name in model:
        np.testing.assert_array_equal(got.wire[name], y[name])
        x64, y64 = np.asarray(model[name], np.float64), np.asarray(y[name], np.float64)
        c_new = c_i[name] - c[name] + (x64 - y64) / (steps * CONFIG.learning_rate)
        dc = got.wire[f"scaffold/dc/{name}"]
        assert dc.dtype == np.float32
        np.testing.assert_allclose(dc, c_new - c_i[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(saved[name], c_new, rtol=1e-5, atol=1e-6)


def test_scaffold_with_compression_sends_the_compressed_model_and_the_change(plan, site, model):
    compression = CompressionConfig(kind="q8")
    settings = ClientSettings(algorithm="scaffold", compression=compression)
    got = update(plan, site, model | controls(model, 0.0), settings)
    names = [t.name for t in wire_manifest(compression, manifest_of(model)).tensors]
    assert list(got.wire) == [*names, "scaffold/dc/weight", "scaffold/dc/bias"]


BN_MODEL = {
    "bn.weight": np.array([1.0, 1.0], np.float32),
    "bn.bias": np.array([0.0, 0.0], np.float32),
    "bn.running_mean": np.array([0.0, 0.0], np.float32),
    "bn.running_var": np.array([1.0, 1.0], np.float32),
    "bn.num_batches_tracked": np.array(0, np.int64),
    "fc.weight": np.array([[0.5, -0.5]], np.float32),
}


class FakeBnPlan:
    """Torch-free: training adds 1 to every tensor; the loss is the sum of all float values."""

    name = "fake_bn"
    version = "1"

    def __init__(self) -> None:
        self.trained_from = []
        self.configs = []
        self.evaluated = []

    def init_weights(self, n_features, seed, options):
        return {k: v.copy() for k, v in BN_MODEL.items()}

    def train(self, weights, data, config):
        self.trained_from.append({k: np.array(v) for k, v in weights.items()})
        self.configs.append(config)
        out = {k: (np.asarray(v) + 1).astype(v.dtype) for k, v in weights.items()}
        return TrainResult(out, 10, {"steps": float(config.steps or config.epochs)})

    def evaluate(self, weights, data):
        self.evaluated.append({k: np.array(v) for k, v in weights.items()})
        return EvalResult(5, {"loss": loss_of(weights)})


def loss_of(weights):
    return float(sum(np.sum(v) for v in weights.values() if v.dtype.kind == "f"))


def test_local_bn_names_are_the_batchnorm_tensors_only():
    assert local_bn_names(BN_MODEL) == [
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert local_bn_names({"fc.weight": BN_MODEL["fc.weight"]}) == []


def test_fedbn_keeps_the_sites_own_batchnorm_layers(site):
    plan = FakeBnPlan()
    settings = ClientSettings(personalization="fedbn")
    state = MemoryClientState()
    update(plan, site, BN_MODEL, settings, state)  # the site's BN layers are now BN_MODEL + 1

    new_global = {k: (v + 10).astype(v.dtype) for k, v in BN_MODEL.items()}
    start = personalized_start(new_global, settings, state)
    for name, value in BN_MODEL.items():
        want = new_global[name] if name == "fc.weight" else value + 1
        np.testing.assert_array_equal(start[name], want)
        assert start[name].dtype == value.dtype
    unpersonalized = personalized_start(new_global, ClientSettings(), state)
    for name, value in new_global.items():
        np.testing.assert_array_equal(unpersonalized[name], value)

    update(plan, site, new_global, settings, state)
    for name, value in start.items():
        np.testing.assert_array_equal(plan.trained_from[-1][name], value)


def test_local_evaluate_without_personalization_reports_global_metrics_only(site):
    plan = FakeBnPlan()
    received = BN_MODEL | {"scaffold/c/fc.weight": np.zeros((1, 2), np.float32)}
    result = local_evaluate(plan, site, received, CONFIG, ClientSettings(), MemoryClientState())
    assert result.metrics == {"loss": loss_of(BN_MODEL)}
    assert list(plan.evaluated[0]) == list(BN_MODEL)
    assert plan.configs == []


def test_local_evaluate_reports_the_fedbn_model_as_personal(site):
    plan = FakeBnPlan()
    settings = ClientSettings(personalization="fedbn")
    state = MemoryClientState()
    update(plan, site, BN_MODEL, settings, state)
    result = local_evaluate(plan, site, BN_MODEL, CONFIG, settings, state)
    personal = personalized_start(BN_MODEL, settings, state)
    assert result.metrics == {"loss": loss_of(BN_MODEL), "personal_loss": loss_of(personal)}
    assert result.metrics["personal_loss"] != result.metrics["loss"]


def test_local_evaluate_finetunes_for_the_personal_metrics(site):
    plan = FakeBnPlan()
    settings = ClientSettings(finetune_steps=3)
    config = dataclasses.replace(CONFIG, correction={"fc.weight": np.ones((1, 2), np.float32)})
    result = local_evaluate(plan, site, BN_MODEL, config, settings, MemoryClientState())
    (tune,) = plan.configs
    assert (tune.steps, tune.epochs, tune.correction) == (3, 0, None)
    tuned = {k: v + 1 for k, v in BN_MODEL.items()}
    assert result.metrics == {"loss": loss_of(BN_MODEL), "personal_loss": loss_of(tuned)}


def test_client_settings_refuse_unknown_values():
    with pytest.raises(TrainingError, match="algorithm"):
        ClientSettings(algorithm="fedsgd")
    with pytest.raises(TrainingError, match="personalization"):
        ClientSettings(personalization="ditto")
    with pytest.raises(TrainingError, match="finetune_steps"):
        ClientSettings(finetune_steps=-1)
