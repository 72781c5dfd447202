"""The local loop every torch plan shares: standardize, minibatch SGD/Adam, optional FedProx term.

Binary classification: the model outputs one logit per row and the loss is
``BCEWithLogitsLoss`` (sigmoid + binary cross-entropy, fused for numerical stability).
All randomness comes from a ``torch.Generator`` seeded by the caller, never the global RNG --
except DP-SGD's noise, which must be secret from the caller (see ``_secret_noise_generator``).

With ``config.dp`` the loop is record-level DP-SGD (Abadi et al. 2016, "Deep Learning with
Differential Privacy", Algorithm 1): Poisson-sampled lots, per-sample gradients clipped to C and
summed, Gaussian noise N(0, sigma^2 C^2) added, divided by the expected lot size. Clipping and
noise are Opacus's (``GradSampleModule`` + ``DPOptimizer``); this module only samples the lots.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from medfed.data.dataset import Dataset
from medfed.data.images import ImageDataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.metrics import binary_metrics, sigmoid
from medfed.training.plan import DpSgdConfig, EvalResult, LocalTrainConfig, TrainResult
from medfed.training.score_histogram import score_histogram
from medfed.training.standardize import fit_standardizer, standardize

OPTIMIZER_OPTIONS = frozenset({"weight_decay", "momentum"})
"""Options every torch plan accepts in ``LocalTrainConfig.options``, besides its own."""
EVAL_BATCH = 512
"""Rows per forward pass outside training: a whole image set at once would not fit in memory."""

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""A per-batch training-time augmentation, drawing its randomness from the loop's generator."""


def check_options(options: Mapping[str, float], plan_options: frozenset[str]) -> None:
    """Refuse unknown option names: a typo must not silently train with a default."""
    unknown = sorted(set(options) - plan_options - OPTIMIZER_OPTIONS)
    if unknown:
        known = sorted(plan_options | OPTIMIZER_OPTIONS)
        raise TrainingError(f"unknown plan options {unknown}; this plan accepts {known}")


def table_width(data: Dataset, plan: str) -> int:
    """The number of feature columns, for plans that train on tables only."""
    if isinstance(data, ImageDataset):
        raise TrainingError(
            f"plan {plan!r} trains on tables, but this dataset holds images "
            f"({data.features[0]}); use an imaging plan (cnn or resnet)"
        )
    return data.n_features


def init_weights(model: nn.Module, seed: int) -> Weights:
    """From ``seed`` alone: ``nn.Linear`` as PyTorch's default, U(-1/sqrt(fan_in),
    1/sqrt(fan_in)); ``nn.Conv2d`` weights with He (Kaiming) normal init for ReLU networks (He et
    al. 2015), biases zero; norm layers keep their identity init (scale 1, shift 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
    return to_weights(model)


def to_weights(model: nn.Module) -> Weights:
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}


def load_weights(model: nn.Module, weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
    """Copy ``weights`` into ``model`` after checking names, order, shapes and dtype."""
    own = model.state_dict()
    expected = {name: tuple(t.shape) for name, t in own.items()}
    got = {name: tuple(int(d) for d in a.shape) for name, a in weights.items()}
    if list(got.items()) != list(expected.items()):
        raise TrainingError(f"weights {got} do not fit this plan's model {expected}")
    bad = [
        name
        for name, a in weights.items()
        if a.dtype != own[name].numpy().dtype  # float32, or int64 for BatchNorm's step counter
    ]
    if bad:
        raise TrainingError(f"tensors {bad} do not have the model's dtypes")
    # Copy: incoming arrays may be read-only views of a wire buffer, which torch must not alias.
    state = {name: torch.from_numpy(np.array(a, copy=True)) for name, a in weights.items()}
    model.load_state_dict(state, strict=True)


def train(
    model: nn.Module,
    weights: Weights,
    data: Dataset,
    config: LocalTrainConfig,
    transform: Transform | None = None,
) -> TrainResult:
    """Local training; ``transform`` augments each training batch (images only)."""
    load_weights(model, weights)
    if config.dp is not None:
        _check_dp_compatible(model, config)
    x = torch.from_numpy(_inputs(data, data.x_train))
    y = torch.from_numpy(np.array(data.y_train, dtype=np.float32, copy=True))
    anchor = [p.detach().clone() for p in model.parameters()]
    optimizer = _optimizer(model, config)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    n = len(y)
    total = config.steps if config.steps > 0 else config.epochs * math.ceil(n / config.batch_size)
    correction = _correction(model, config)
    model.eval()  # BatchNorm: measure with running statistics, do not update them
    initial = float(loss_fn(_logits(model, x), y))
    model.train()
    dp_metrics: dict[str, float] = {}
    if config.dp is not None:
        taken, dp_metrics = _dp_sgd(
            model, optimizer, x, y, config.dp, config.batch_size, total, generator, transform
        )
    else:
        taken = _sgd(
            model, optimizer, x, y, config, total, generator, anchor, correction, transform
        )
    model.eval()
    final = float(loss_fn(_logits(model, x), y))
    if not math.isfinite(final):
        raise TrainingError("training diverged (non-finite loss); lower the learning rate")
    # initial_loss: the global model's loss on this site's data, which q-FedAvg weights by.
    # Neither loss is noised: under DP they are outside the (epsilon, delta) guarantee.
    metrics = {"train_loss": final, "initial_loss": initial, "steps": float(taken), **dp_metrics}
    return TrainResult(weights=to_weights(model), num_examples=n, metrics=metrics)


def _sgd(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    config: LocalTrainConfig,
    total: int,
    generator: torch.Generator,
    anchor: list[torch.Tensor],
    correction: list[tuple[torch.Tensor, torch.Tensor]],
    transform: Transform | None,
) -> int:
    """The plain loop: ``total`` shuffled minibatch steps; returns how many were taken."""
    loss_fn = nn.BCEWithLogitsLoss()
    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    taken = 0
    for index in _batches(len(y), config.batch_size, total, generator):
        if batch_norm and len(index) < 2:
            continue  # BatchNorm cannot normalise a batch of one row; skip that step
        taken += 1
        rows = x[index] if transform is None else transform(x[index], generator)
        optimizer.zero_grad()
        loss = loss_fn(model(rows).squeeze(-1), y[index])
        if config.proximal_mu > 0:
            loss = loss + 0.5 * config.proximal_mu * _squared_distance(model, anchor)
        loss.backward()
        for param, fix in correction:
            param.grad.add_(fix)  # type: ignore[union-attr]
        optimizer.step()
    return taken


def evaluate(model: nn.Module, weights: Weights, data: Dataset) -> EvalResult:
    """Test metrics, inputs prepared with the *training* split's statistics."""
    logits = predict(model, weights, data)
    metrics = binary_metrics(data.y_test, logits)
    histogram = score_histogram(data.y_test, sigmoid(logits))
    return EvalResult(len(data.y_test), metrics, histogram)


def predict(model: nn.Module, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
    """One logit per row of ``data.x_test``, inputs prepared exactly as ``evaluate`` prepares
    them: a deployed model must see what the node's evaluation saw, or its scores mean nothing."""
    load_weights(model, weights)
    x = torch.from_numpy(_inputs(data, data.x_test))
    model.eval()
    return _logits(model, x).numpy().astype(np.float64)


def _inputs(data: Dataset, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Model inputs: table columns standardized with the training split's mean and std (or the
    study's pooled statistics, ``TabularDataset.standardization``); image
    pixels in [0, 1] mapped to [-1, 1] (a fixed scale, the same at every hospital)."""
    if isinstance(data, ImageDataset):
        return (x - np.float32(0.5)) / np.float32(0.5)
    if data.standardization is not None:  # federated standardization, set by the node
        mean, std = data.standardization
    else:
        mean, std = fit_standardizer(data.x_train)
    return standardize(x, mean, std)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One logit per row, ``EVAL_BATCH`` rows at a time, without gradients."""
    with torch.no_grad():
        parts = [model(x[i : i + EVAL_BATCH]).squeeze(-1) for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _correction(
    model: nn.Module, config: LocalTrainConfig
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, gradient correction) pairs; the correction must cover every parameter."""
    if config.correction is None:
        return []
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, param in model.named_parameters():
        fix = config.correction.get(name)
        if fix is None or tuple(fix.shape) != tuple(param.shape):
            raise TrainingError(f"gradient correction does not fit parameter {name!r}")
        pairs.append((param, torch.from_numpy(np.array(fix, dtype=np.float32, copy=True))))
    return pairs


def _squared_distance(model: nn.Module, anchor: list[torch.Tensor]) -> torch.Tensor:
    """||w - w_global||^2, the FedProx proximal term (Li et al., 2020, "Federated Optimization in
    Heterogeneous Networks", eq. 2) that keeps a heterogeneous site near the global model."""
    terms = [(p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor, strict=True)]
    return torch.stack(terms).sum()


def _optimizer(model: nn.Module, config: LocalTrainConfig) -> torch.optim.Optimizer:
    decay = float(config.options.get("weight_decay", 0.0))
    if config.optimizer == "adam":
        if "momentum" in config.options:
            raise TrainingError("option 'momentum' applies to sgd only")
        return torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=decay)
    momentum = float(config.options.get("momentum", 0.0))
    return torch.optim.SGD(
        model.parameters(), lr=config.learning_rate, momentum=momentum, weight_decay=decay
    )


def _batches(
    n: int, batch_size: int, total: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``total`` minibatches of row indices, reshuffling at each pass over the ``n`` rows."""
    if n == 0:
        raise TrainingError("cannot train: the training split has no rows")
    done = 0
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            if done == total:
                return
            yield order[start : start + batch_size]
            done += 1


def _check_dp_compatible(model: nn.Module, config: LocalTrainConfig) -> None:
    """Refuse what DP-SGD's per-sample clipping cannot account for, instead of leaking quietly."""
    if config.proximal_mu > 0:
        raise TrainingError(
            "DP-SGD cannot be combined with FedProx (proximal_mu > 0): the proximal term's "
            "gradient is not a per-sample gradient, so Opacus would drop it; set proximal_mu = 0"
        )
    if config.correction is not None:
        raise TrainingError(
            "DP-SGD cannot be combined with SCAFFOLD's gradient correction: its control variates "
            "are built from un-noised local gradients and would leak records past the clipping"
        )
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise TrainingError(
            "DP-SGD needs per-sample gradients, which BatchNorm's batch statistics make "
            "undefined (each row's output depends on the other rows of its batch); train "
            "without batch norm (plan option batch_norm = 0) or use GroupNorm"
        )


def _dp_sgd(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    dp: DpSgdConfig,
    batch_size: int,
    total: int,
    generator: torch.Generator,
    transform: Transform | None = None,
) -> tuple[int, dict[str, float]]:
    """``total`` DP-SGD steps on Poisson lots of expected size ``min(batch_size, n)``.

    The loss is summed, so Opacus sees each row's own gradient; ``DPOptimizer`` clips each to C,
    sums, adds N(0, sigma^2 C^2) per coordinate and divides by the *expected* lot size (dividing
    by the drawn size would leak it). An empty lot is still a step: its update is noise alone,
    and the accountant counts it. The wrapped optimizer (SGD or Adam, with weight decay or
    momentum) only post-processes the noisy gradient, which DP permits.
    """
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    n = len(y)
    expected = min(batch_size, n)
    rate = expected / n
    try:
        per_sample = GradSampleModule(model, loss_reduction="sum", strict=True)
    except NotImplementedError as exc:
        raise TrainingError(f"Opacus cannot compute per-sample gradients here: {exc}") from exc
    dp_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=expected,
        loss_reduction="mean",  # i.e. divide the noisy sum by expected_batch_size
        generator=_secret_noise_generator(),
        secure_mode=True,  # Opacus's defence against floating-point attacks on the sampler
    )
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    try:
        for index in _poisson_batches(n, rate, total, generator):
            dp_optimizer.zero_grad()
            # An input that requires grad keeps the layer hooks Opacus installs on their
            # documented path (torch warns otherwise); the input gradient itself is unused.
            rows = x[index] if transform is None else transform(x[index], generator)
            rows = rows.requires_grad_()
            loss_fn(per_sample(rows).squeeze(-1), y[index]).backward()
            dp_optimizer.step()
    finally:
        per_sample.to_standard_module()  # remove the hooks and per-sample attributes
    return total, {"dp_noise_multiplier": dp.noise_multiplier, "dp_sample_rate": rate}


def _poisson_batches(
    n: int, rate: float, total: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``total`` lots of row indices, each row in each lot independently with probability
    ``rate`` -- the sampling that DP-SGD's privacy amplification (and its accountant) assumes.
    Lots vary in size and may be empty."""
    if n == 0:
        raise TrainingError("cannot train: the training split has no rows")
    for _ in range(total):
        yield torch.nonzero(torch.rand(n, generator=generator) < rate).flatten()


_MT_WORDS = 624
_MT_STATE_OFFSET = 24
"""Byte offset of the Mersenne Twister words in torch's CPU generator state (after the initial
seed, ``left``, ``seeded`` and ``next``); ``_secret_noise_generator`` checks it before use."""


def _secret_noise_generator() -> torch.Generator:
    """A torch generator for DP noise whose whole Mersenne Twister state comes from ``secrets``.

    Why not ``config.seed``: that is the round seed, chosen by the coordinator and shared by
    all sites (``plan.round_seed``). Noise drawn from it could be regenerated by the
    coordinator, or by any other site, and subtracted from the update, leaving the clipped
    gradient sum bare: no privacy at all. The noise must be unpredictable to everyone else.

    Why not ``manual_seed(secrets.randbits(64))``: torch's CPU generator seeds MT19937 with the
    seed's low 32 bits only, and 2^32 candidate noise vectors can be tried one by one (the right
    one leaves a residual of norm at most |lot| * C). Opacus's own answer, ``PrivacyEngine``'s
    ``secure_mode`` with torchcsprng, needs a package that is archived and not installed. So all
    624 state words are filled
    from the OS CSPRNG (19,968 bits); ``secure_mode=True`` in ``DPOptimizer`` adds Opacus's
    defence against floating-point attacks on the Gaussian sampler (arXiv:2107.10138).
    """
    probe_seed = 0x5EED
    generator = torch.Generator().manual_seed(probe_seed)
    state = generator.get_state().numpy().copy()
    end = _MT_STATE_OFFSET + 8 * _MT_WORDS
    words = state[:end].view(np.uint64)
    second = (1812433253 * (probe_seed ^ (probe_seed >> 30)) + 1) & 0xFFFFFFFF  # MT19937 init
    if not (words[0] == words[3] == probe_seed and words[4] == second):
        raise TrainingError(
            f"torch {torch.__version__}'s generator state layout is not the one DP-SGD "
            "expects, so its noise cannot be seeded securely; refusing to train"
        )
    state[_MT_STATE_OFFSET:end] = np.frombuffer(secrets.token_bytes(8 * _MT_WORDS), np.uint8)
    generator.set_state(torch.from_numpy(state))
    return generator
