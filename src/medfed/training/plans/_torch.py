"""The local loop every torch plan shares: standardize, minibatch SGD/Adam, optional FedProx term.

Binary classification: the model outputs one logit per row and the loss is
``BCEWithLogitsLoss`` (sigmoid + binary cross-entropy, fused for numerical stability).
All randomness comes from a ``torch.Generator`` seeded by the caller, never the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from medfed.data.tabular import TabularDataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.metrics import binary_metrics
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult
from medfed.training.standardize import fit_standardizer, standardize

OPTIMIZER_OPTIONS = frozenset({"weight_decay", "momentum"})
"""Options every torch plan accepts in ``LocalTrainConfig.options``, besides its own."""


def check_options(options: Mapping[str, float], plan_options: frozenset[str]) -> None:
    """Refuse unknown option names: a typo must not silently train with a default."""
    unknown = sorted(set(options) - plan_options - OPTIMIZER_OPTIONS)
    if unknown:
        known = sorted(plan_options | OPTIMIZER_OPTIONS)
        raise TrainingError(f"unknown plan options {unknown}; this plan accepts {known}")


def init_weights(model: nn.Module, seed: int) -> Weights:
    """PyTorch's default ``nn.Linear`` init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
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
    model: nn.Module, weights: Weights, data: TabularDataset, config: LocalTrainConfig
) -> TrainResult:
    load_weights(model, weights)
    mean, std = fit_standardizer(data.x_train)
    x = torch.from_numpy(standardize(data.x_train, mean, std))
    y = torch.from_numpy(np.array(data.y_train, dtype=np.float32, copy=True))
    anchor = [p.detach().clone() for p in model.parameters()]
    optimizer = _optimizer(model, config)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    n = len(y)
    total = config.steps if config.steps > 0 else config.epochs * math.ceil(n / config.batch_size)
    correction = _correction(model, config)
    model.eval()  # BatchNorm: measure with running statistics, do not update them
    with torch.no_grad():
        initial = float(loss_fn(model(x).squeeze(-1), y))
    model.train()
    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    taken = 0
    for index in _batches(n, config.batch_size, total, generator):
        if batch_norm and len(index) < 2:
            continue  # BatchNorm cannot normalise a batch of one row; skip that step
        taken += 1
        optimizer.zero_grad()
        loss = loss_fn(model(x[index]).squeeze(-1), y[index])
        if config.proximal_mu > 0:
            loss = loss + 0.5 * config.proximal_mu * _squared_distance(model, anchor)
        loss.backward()
        for param, fix in correction:
            param.grad.add_(fix)  # type: ignore[union-attr]
        optimizer.step()
    model.eval()
    with torch.no_grad():
        final = float(loss_fn(model(x).squeeze(-1), y))
    if not math.isfinite(final):
        raise TrainingError("training diverged (non-finite loss); lower the learning rate")
    # initial_loss: the global model's loss on this site's data, which q-FedAvg weights by.
    metrics = {"train_loss": final, "initial_loss": initial, "steps": float(taken)}
    return TrainResult(weights=to_weights(model), num_examples=n, metrics=metrics)


def evaluate(model: nn.Module, weights: Weights, data: TabularDataset) -> EvalResult:
    """Test metrics, inputs standardized with the *training* split's statistics."""
    load_weights(model, weights)
    mean, std = fit_standardizer(data.x_train)
    x = torch.from_numpy(standardize(data.x_test, mean, std))
    model.eval()
    with torch.no_grad():
        logits = model(x).squeeze(-1).numpy().astype(np.float64)
    return EvalResult(num_examples=len(data.y_test), metrics=binary_metrics(data.y_test, logits))


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
