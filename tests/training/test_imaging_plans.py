import dataclasses
import math

import numpy as np
import pytest
import torch

from medfed.data.images import ImageDataset
from medfed.errors import TrainingError
from medfed.training import registry
from medfed.training.local_update import local_bn_names
from medfed.training.plan import DpSgdConfig, LocalTrainConfig
from medfed.training.plans import _torch, _vision, cnn, resnet
from medfed.training.registry import get_plan, plan_sha256
from tests.training.synthetic_data import synthetic

CNN = get_plan("cnn", "1")
RESNET = get_plan("resnet", "1")
SMALL = {"cnn": {"width": 8.0}, "resnet": {"width": 8.0, "blocks": 1.0}}
"""Narrow networks: each test trains in well under a second on one CPU thread."""
AUGMENT = {
    "augment_shift": 2.0,
    "augment_rotate": 10.0,
    "augment_flip": 1.0,
    "augment_contrast": 0.2,
}


@pytest.fixture(autouse=True)
def one_thread():
    """Convolutions on 16 px images are far slower with intra-op threads fighting for a shared
    CPU than on one thread; restored so the rest of the suite sees torch's own setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def squares(seed, size=16, n_train=200, n_test=100, channels=1):
    """Class 1 holds a bright 4x4 square somewhere, class 0 the same 16 bright pixels scattered:
    both classes are equally bright, so only a learnt shape detector separates them."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = rng.uniform(0.0, 0.4, size=(n, channels, size, size)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    for i in range(n):
        if y[i]:
            r, c = rng.integers(0, size - 4, 2)
            x[i, :, r : r + 4, c : c + 4] = 1.0
        else:
            spots = rng.choice(size * size, 16, replace=False)
            x[i, :].reshape(channels, -1)[:, spots] = 1.0
    return ImageDataset("y", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def config(options, **changes):
    base = LocalTrainConfig(
        epochs=0, steps=3, batch_size=32, optimizer="adam", learning_rate=0.01, seed=1,
        options=options,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def identical(a, b):
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


@pytest.mark.parametrize(
    ("plan", "options"),
    [
        (CNN, SMALL["cnn"]),
        (RESNET, SMALL["resnet"]),
        (CNN, {**SMALL["cnn"], "augment_shift": 1.0, "augment_flip": 1.0}),
    ],
    ids=["cnn", "resnet", "cnn-augmented"],
)
def test_plan_learns_to_find_the_square(plan, options):
    data = squares(0)
    w0 = plan.init_weights(1, 0, options)

    untrained = plan.evaluate(w0, data).metrics
    result = plan.train(w0, data, config(options, epochs=5, steps=0))
    trained = plan.evaluate(result.weights, data).metrics

    assert untrained["accuracy"] < 0.7
    assert untrained["auc"] < 0.75
    assert trained["accuracy"] > 0.9
    assert trained["auc"] > 0.95
    assert result.metrics["train_loss"] < result.metrics["initial_loss"]
    assert result.num_examples == 200


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_same_seed_gives_bit_identical_weights_even_with_augmentation(name):
    plan = get_plan(name, "1")
    options = {**SMALL[name], **AUGMENT}
    data = squares(1, n_train=64, n_test=8)
    w0 = plan.init_weights(1, 5, options)

    runs = []
    for global_seed in (11, 12):  # the global RNG must play no part
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            runs.append(plan.train(w0, data, config(options)).weights)
    other = plan.train(w0, data, config(options, seed=2)).weights

    assert identical(plan.init_weights(1, 5, options), w0)
    assert not identical(plan.init_weights(1, 6, options), w0)
    assert identical(runs[0], runs[1])
    assert not identical(runs[0], w0)
    assert not identical(runs[0], other)


@pytest.mark.parametrize(
    ("plan", "options", "size"),
    [
        (CNN, {"width": 8.0}, 16),
        (CNN, {"width": 24.0}, 16),
        (CNN, {"width": 8.0, "batch_norm": 1.0}, 16),
        (RESNET, {"width": 8.0, "blocks": 1.0}, 16),
        (RESNET, {"width": 8.0, "blocks": 3.0}, 16),
        (RESNET, {"width": 24.0, "blocks": 1.0, "batch_norm": 1.0}, 16),
        (RESNET, {"width": 8.0, "blocks": 1.0, "large_input": 1.0}, 64),
    ],
    ids=["cnn-w8", "cnn-w24", "cnn-bn", "resnet-b1", "resnet-b3", "resnet-w24-bn", "resnet-large"],
)
def test_evaluate_rebuilds_the_architecture_from_the_weights(plan, options, size):
    module = cnn if plan is CNN else resnet
    data = squares(2, size=size, n_train=16, n_test=32)
    weights = plan.train(plan.init_weights(1, 0, options), data, config(options, steps=1)).weights

    got = plan.evaluate(weights, data)
    expected = _torch.evaluate(module._model_from_options(options), weights, data)

    assert got.num_examples == 32
    assert got.metrics == expected.metrics
    assert all(math.isfinite(v) for v in got.metrics.values())


@pytest.mark.parametrize(
    ("weights_of", "evaluated_by"), [(CNN, RESNET), (RESNET, CNN)], ids=["cnn", "resnet"]
)
def test_weights_of_the_other_imaging_plan_are_refused(weights_of, evaluated_by):
    name = weights_of.name
    weights = weights_of.init_weights(1, 0, SMALL[name])

    with pytest.raises(TrainingError, match="do not fit"):
        evaluated_by.evaluate(weights, squares(0, n_train=4, n_test=4))


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_weights_trained_at_28_px_classify_32_px_images(name):
    plan = get_plan(name, "1")
    options = SMALL[name]
    trained = plan.train(
        plan.init_weights(1, 0, options), squares(3, size=28), config(options, epochs=5, steps=0)
    ).weights

    larger = plan.evaluate(trained, squares(4, size=32))

    fresh = plan.init_weights(1, 0, options)
    assert {k: a.shape for k, a in trained.items()} == {k: a.shape for k, a in fresh.items()}
    assert larger.metrics["accuracy"] > 0.9
    assert larger.metrics["auc"] > 0.9


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_batch_norm_weights_carry_running_statistics_for_fedbn(name):
    plan = get_plan(name, "1")
    group_norm = plan.init_weights(1, 0, SMALL[name])
    batch_norm = plan.init_weights(1, 0, {**SMALL[name], "batch_norm": 1.0})
    data = squares(5, n_train=32, n_test=4)

    trained = plan.train(batch_norm, data, config({**SMALL[name], "batch_norm": 1.0})).weights
    local = local_bn_names(batch_norm)

    means = [k for k in batch_norm if k.endswith(".running_mean")]
    assert means
    assert not any(k.endswith(".running_mean") for k in group_norm)
    assert local_bn_names(group_norm) == []
    for mean in means:
        layer = mean.removesuffix(".running_mean")
        assert {f"{layer}.{t}" for t in ("weight", "bias", "running_var")} <= set(local)
        assert not np.array_equal(trained[mean], batch_norm[mean])  # measured at the site
    assert not any(k.startswith(("features.0.", "stem.0.")) for k in local)  # the convolutions
    assert all(batch_norm[k].ndim == 1 or k.endswith("num_batches_tracked") for k in local)


@pytest.mark.parametrize(
    ("name", "extra"), [("cnn", {}), ("resnet", {}), ("cnn", AUGMENT)],
    ids=["cnn", "resnet", "cnn-augmented"],
)  # fmt: skip
def test_dp_sgd_trains_through_conv_and_group_norm(name, extra):
    plan = get_plan(name, "1")
    options = {**SMALL[name], **extra}
    w0 = plan.init_weights(1, 0, options)
    dp = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0)

    result = plan.train(w0, squares(6, n_train=64, n_test=8), config(options, batch_size=16, dp=dp))

    assert result.metrics["dp_noise_multiplier"] == 1.0
    assert result.metrics["steps"] == 3.0
    assert all(np.isfinite(a).all() for a in result.weights.values())
    assert not identical(result.weights, w0)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_dp_sgd_refuses_batch_norm(name):
    plan = get_plan(name, "1")
    options = {**SMALL[name], "batch_norm": 1.0}
    dp = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0)

    with pytest.raises(TrainingError, match=r"BatchNorm.*GroupNorm"):
        plan.train(plan.init_weights(1, 0, options), squares(6), config(options, dp=dp))


def normalised_batch(seed, rows=16):
    x = squares(seed, n_train=rows, n_test=1).x_train
    return torch.from_numpy((x - 0.5) / 0.5)


def test_no_augmentation_by_default():
    assert _vision.augmentation({}) is None
    assert _vision.augmentation(dict.fromkeys(AUGMENT, 0.0)) is None


def test_augmentation_changes_the_batch_deterministically():
    augment = _vision.augmentation(AUGMENT)
    x = normalised_batch(7)

    out = augment(x, torch.Generator().manual_seed(3))
    again = augment(x, torch.Generator().manual_seed(3))
    other = augment(x, torch.Generator().manual_seed(4))

    assert out.shape == x.shape
    assert out.dtype == torch.float32
    assert torch.equal(out, again)
    assert not torch.equal(out, other)
    assert all(not torch.allclose(out[i], x[i], atol=1e-3) for i in range(len(x)))


def test_flip_alone_mirrors_some_rows_left_to_right_and_keeps_the_others():
    augment = _vision.augmentation({"augment_flip": 1.0})
    x = normalised_batch(8)

    out = augment(x, torch.Generator().manual_seed(0))

    mirrored = [torch.allclose(o, r.flip(-1), atol=1e-5) for o, r in zip(out, x, strict=True)]
    kept = [torch.allclose(o, r, atol=1e-5) for o, r in zip(out, x, strict=True)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))  # exactly one of the two
    assert 0 < sum(mirrored) < len(x)


def test_contrast_alone_is_a_per_image_gain_and_offset():
    augment = _vision.augmentation({"augment_contrast": 0.3})
    x = normalised_batch(9).double()

    out = augment(x.float(), torch.Generator().manual_seed(0)).double()

    for before, after in zip(x.flatten(1), out.flatten(1), strict=True):
        gain, offset = np.polyfit(before.numpy(), after.numpy(), 1)
        assert np.allclose(gain * before.numpy() + offset, after.numpy(), atol=1e-5)
        assert 0.7 <= gain <= 1.3
        assert abs(offset) <= 0.3


@pytest.mark.parametrize(
    "bad",
    [
        {"augment_rotate": 90.0},
        {"augment_rotate": -5.0},
        {"augment_shift": 1.5},
        {"augment_flip": 0.5},
        {"augment_contrast": 0.6},
        {"augment_rotate": math.nan},
    ],
    ids=["rotate-90", "rotate-negative", "shift-fraction", "flip-half", "contrast", "rotate-nan"],
)
@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_invalid_augmentation_is_refused(name, bad):
    plan = get_plan(name, "1")
    options = {**SMALL[name], **bad}
    key = next(iter(bad))

    with pytest.raises(TrainingError, match=key):
        plan.train(plan.init_weights(1, 0, SMALL[name]), squares(0), config(options))


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("cnn", {"width": 10.0}, "multiple of 8"),
        ("resnet", {"width": 12.0}, "multiple of 8"),
        ("cnn", {"width": 0.0}, "width"),
        ("cnn", {"batch_norm": 2.0}, "batch_norm"),
        ("resnet", {"blocks": 0.0}, "blocks"),
        ("resnet", {"large_input": 0.5}, "large_input"),
        ("cnn", {"blocks": 2.0}, "unknown plan options"),
        ("resnet", {"augment_rotat": 5.0}, "unknown plan options"),
    ],
)
def test_invalid_network_options_are_refused(name, bad, message):
    plan = get_plan(name, "1")

    with pytest.raises(TrainingError, match=message):
        plan.init_weights(1, 0, bad)
    with pytest.raises(TrainingError, match=message):
        plan.train(plan.init_weights(1, 0, {}), squares(0), config(bad))


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_imaging_plans_refuse_tables(name):
    plan = get_plan(name, "1")
    weights = plan.init_weights(1, 0, SMALL[name])
    table = synthetic(0)

    with pytest.raises(TrainingError, match="images"):
        plan.train(weights, table, config(SMALL[name]))
    with pytest.raises(TrainingError, match="images"):
        plan.evaluate(weights, table)


@pytest.mark.parametrize(
    ("name", "options"), [("logistic_regression", {}), ("mlp", {"hidden": 4.0})]
)
def test_table_plans_refuse_images(name, options):
    plan = get_plan(name, "1")
    weights = plan.init_weights(1, 0, options)
    images = squares(0, n_train=8, n_test=8)

    with pytest.raises(TrainingError, match="tables"):
        plan.train(weights, images, config(options))
    with pytest.raises(TrainingError, match="tables"):
        plan.evaluate(weights, images)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (squares(0, n_train=8, n_test=8, channels=3), "greyscale"),
        (squares(0, size=12, n_train=8, n_test=8), "at least 16x16"),
    ],
    ids=["rgb", "12px"],
)
@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_imaging_plans_refuse_colour_and_tiny_images(name, data, message):
    plan = get_plan(name, "1")
    weights = plan.init_weights(1, 0, SMALL[name])

    with pytest.raises(TrainingError, match=message):
        plan.train(weights, data, config(SMALL[name]))
    with pytest.raises(TrainingError, match=message):
        plan.evaluate(weights, data)


def test_one_side_under_16_px_is_refused():
    x = np.zeros((4, 1, 16, 12), np.float32)
    y = np.array([0, 1, 0, 1], np.float32)
    narrow = ImageDataset("y", x, y, x, y)

    with pytest.raises(TrainingError, match="16x16"):
        CNN.evaluate(CNN.init_weights(1, 0, {}), narrow)


def test_plan_hashes_differ_and_are_stable():
    cnn_hash, resnet_hash = plan_sha256(CNN), plan_sha256(RESNET)

    assert cnn_hash != resnet_hash
    assert (plan_sha256(CNN), plan_sha256(RESNET)) == (cnn_hash, resnet_hash)
    assert len(cnn_hash) == len(resnet_hash) == 64


@pytest.mark.parametrize(
    "module", ["medfed.training.plans._networks", "medfed.training.plans._vision"]
)
def test_plan_hashes_cover_the_shared_imaging_code(module, monkeypatch, tmp_path):
    before = {plan.name: plan_sha256(plan) for plan in (CNN, RESNET)}
    original = registry._module_file
    edited = tmp_path / "edited.py"
    edited.write_bytes(original(module).read_bytes() + b"# one more line\n")

    monkeypatch.setattr(
        registry, "_module_file", lambda name: edited if name == module else original(name)
    )

    assert module in registry._SHARED_MODULES
    assert all(plan_sha256(plan) != before[plan.name] for plan in (CNN, RESNET))
