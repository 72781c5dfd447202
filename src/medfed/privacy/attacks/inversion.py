"""Gradient inversion: what a curious coordinator can rebuild of the images behind an update.

The attack is Geiping, Bauermeister, Droege, Moeller, NeurIPS 2020, "Inverting Gradients -- How
easy is it to break privacy in federated learning?": start from random dummy images, simulate
what the victim would have sent had it trained on them, and move the dummies (Adam on the signed
gradient, step decay at 3/8, 5/8 and 7/8 of the run, pixels boxed to the model's input range)
to minimise

    1 - <observed, simulated> / (||observed|| ||simulated||)  +  tv_weight * TV(dummies)

the cosine distance over all parameters (their eq. 4: it matches the update's direction, which a
learning rate, a clipping bound or a number of local steps does not change) plus a total-
variation prior that favours natural images. "What the victim would have sent" is a
``Simulator``: one gradient (``gradient_simulator``), or several local steps of SGD or Adam
unrolled through autograd (``local_training_simulator``, their Sec. 5: FedAvg's multi-step
updates), or a sum over sites (secure aggregation's view) built from those.

Labels come first and for free from the last layer (Zhao, Mopuri, Bilen 2020, "iDLG"): with one
logit and binary cross-entropy the head's bias gradient is mean(sigmoid(z) - y), negative exactly
when a lone image is positive; for a batch, the count of positives follows from that mean and
an estimate of the model's mean probability (the batch version, as in Yin et al., CVPR 2021,
"See through Gradients", and Wainakh et al. 2022 for counts).

The attacker's last step is ``denoise``: a 3 x 3 median filter over each reconstruction. Where
the update does not pin a pixel down, the search leaves isolated bright or dark pixels; a film
has none, so an attacker removes them (a natural-image prior like the TV term, applied after the
search). Reports give the scores with and without it.

torch is imported inside the functions: this module is imported by code that must stay light.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from medfed.errors import AttackError

if TYPE_CHECKING:
    import torch
    from torch import nn

Simulator = Callable[["torch.Tensor"], list["torch.Tensor"]]
"""Dummy inputs (rows, c, h, w) -> the tensors the attacker observes, one per parameter."""
Transform = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]
LocalOptimizer = Literal["sgd", "adam"]


@dataclass(frozen=True)
class InversionConfig:
    """Geiping et al.'s settings, scaled to small greyscale images."""

    iterations: int = 1000
    learning_rate: float = 0.1
    tv_weight: float = 1e-2
    restarts: int = 1
    bounds: tuple[float, float] = (-1.0, 1.0)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 1:
            raise AttackError("an inversion needs at least one iteration and one restart")
        if not (self.learning_rate > 0 and self.tv_weight >= 0):
            raise AttackError("learning_rate must be > 0 and tv_weight >= 0")


@dataclass(frozen=True)
class Reconstruction:
    """The best restart's dummies in model-input space, its final objective and the time taken."""

    inputs: npt.NDArray[np.float32]
    objective: float
    seconds: float


def invert(
    simulate: Simulator,
    observed: Sequence[torch.Tensor],
    shape: tuple[int, int, int, int],
    config: InversionConfig,
    generator: torch.Generator,
) -> Reconstruction:
    """Dummies of ``shape`` whose simulated observation points the way ``observed`` does."""
    started = time.perf_counter()
    target = [t.detach() for t in observed]
    best: tuple[float, torch.Tensor] | None = None
    for _ in range(config.restarts):
        objective, dummy = _one_restart(simulate, target, shape, config, generator)
        if best is None or objective < best[0]:
            best = (objective, dummy)
    assert best is not None  # restarts >= 1, checked by InversionConfig
    inputs = best[1].numpy().astype(np.float32)
    return Reconstruction(inputs, best[0], time.perf_counter() - started)


def denoise(images: npt.NDArray[np.floating], size: int = 3) -> npt.NDArray[np.float32]:
    """A ``size`` x ``size`` median filter over each image of ``images`` (rows, c, h, w), edges
    repeated: the impulse noise the search leaves goes, edges stay."""
    from scipy.ndimage import median_filter

    if images.ndim != 4 or size < 1:
        raise AttackError(f"denoise takes (rows, c, h, w) images and size >= 1, got {images.shape}")
    return np.asarray(median_filter(images, size=(1, 1, size, size), mode="nearest"), np.float32)


def _one_restart(
    simulate: Simulator,
    target: list[torch.Tensor],
    shape: tuple[int, int, int, int],
    config: InversionConfig,
    generator: torch.Generator,
) -> tuple[float, torch.Tensor]:
    import torch

    low, high = config.bounds
    dummy = torch.randn(shape, generator=generator).clamp_(low, high).requires_grad_(True)
    optimizer = torch.optim.Adam([dummy], lr=config.learning_rate)
    n = config.iterations
    milestones = [int(n * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    objective = math.inf
    for _ in range(n):
        optimizer.zero_grad()
        loss = cosine_distance(simulate(dummy), target)
        loss = loss + config.tv_weight * total_variation(dummy)
        (grad,) = torch.autograd.grad(loss, [dummy])
        dummy.grad = grad.sign()  # Geiping et al.: signed gradients, as in adversarial attacks
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            dummy.clamp_(low, high)
        objective = float(loss.detach())
    return objective, dummy.detach()


def cosine_distance(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 - cos(a, b) with a and b each flattened over all their tensors (Geiping et al. eq. 4)."""
    import torch

    if len(a) != len(b):
        raise AttackError(f"{len(a)} simulated tensors against {len(b)} observed")
    dot = torch.stack([(x * y).sum() for x, y in zip(a, b, strict=True)]).sum()
    norm_a = torch.sqrt(torch.stack([(x * x).sum() for x in a]).sum())
    norm_b = torch.sqrt(torch.stack([(y * y).sum() for y in b]).sum())
    result: torch.Tensor = 1.0 - dot / (norm_a * norm_b + 1e-12)
    return result


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (anisotropic total variation, Rudin,
    Osher, Fatemi 1992)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def gradient_simulator(model: nn.Module, labels: torch.Tensor) -> Simulator:
    """The mean binary cross-entropy gradient the model's parameters would get from the dummies:
    what one local SGD step reveals (its update is -lr times this)."""
    import torch

    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    names = [name for name, _ in model.named_parameters()]

    def simulate(x: torch.Tensor) -> list[torch.Tensor]:
        loss = _loss(model, dict(zip(names, params, strict=True)), x, labels)
        return list(torch.autograd.grad(loss, params, create_graph=True))

    return simulate


def local_training_simulator(
    model: nn.Module,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    optimizer: LocalOptimizer = "sgd",
    seed: int | None = None,
    transform: Transform | None = None,
) -> Simulator:
    """The model change (new - old) after ``steps`` local steps on the dummies, unrolled through
    autograd: SGD, or Adam with torch's defaults (betas 0.9, 0.999; eps 1e-8). With ``seed`` the
    batch order and augmentation draws replay medfed's local loop exactly
    (``training.plans._torch``: one ``torch.Generator``, a fresh permutation per pass, the
    transform after each batch is cut), which the coordinator can do: it sends the round's seed."""
    import torch

    if steps < 1 or batch_size < 1:
        raise AttackError("local training needs steps >= 1 and batch_size >= 1")
    names = [name for name, _ in model.named_parameters()]
    start = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    def simulate(x: torch.Tensor) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        params = list(start)
        m = [torch.zeros_like(p) for p in params]
        v = [torch.zeros_like(p) for p in params]
        for step, index in enumerate(_batch_order(len(x), batch_size, steps, generator), 1):
            rows, targets = x[index], labels[index]
            if transform is not None and generator is not None:
                rows = transform(rows, generator)
            loss = _loss(model, dict(zip(names, params, strict=True)), rows, targets)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            if optimizer == "sgd":
                params = [p - learning_rate * g for p, g in zip(params, grads, strict=True)]
                continue
            m = [0.9 * a + 0.1 * g for a, g in zip(m, grads, strict=True)]
            v = [0.999 * b + 0.001 * g * g for b, g in zip(v, grads, strict=True)]
            c1, c2 = 1 - 0.9**step, 1 - 0.999**step
            # + 1e-30 under the root: d sqrt(v)/dv is infinite at v = 0 (a dead unit's parameter)
            params = [
                p - learning_rate * (a / c1) / (torch.sqrt(b / c2 + 1e-30) + 1e-8)
                for p, a, b in zip(params, m, v, strict=True)
            ]
        return [p - s for p, s in zip(params, start, strict=True)]

    return simulate


def summed_simulator(parts: Sequence[Simulator], rows: Sequence[int]) -> Simulator:
    """Secure aggregation's view: the sum of several sites' observations, site i owning the
    next ``rows[i]`` dummies."""
    import torch

    if len(parts) != len(rows) or not parts:
        raise AttackError("one row count per site simulator, at least one site")
    cuts = np.cumsum([0, *rows])

    def simulate(x: torch.Tensor) -> list[torch.Tensor]:
        outs = [part(x[cuts[i] : cuts[i + 1]]) for i, part in enumerate(parts)]
        return [torch.stack(ts).sum(0) for ts in zip(*outs, strict=True)]

    return simulate


def recover_label(head_bias_gradient: float) -> int:
    """A lone image's label from the head's bias gradient sigmoid(z) - y (iDLG, Zhao et al.
    2020): negative iff y = 1. Works on an SGD update too, with the sign flipped by -lr."""
    if not math.isfinite(head_bias_gradient) or head_bias_gradient == 0.0:
        raise AttackError("a zero or non-finite bias gradient reveals no label")
    return 1 if head_bias_gradient < 0 else 0


def count_positive_labels(
    head_bias_gradient: float, batch_size: int, mean_probability: float
) -> int:
    """How many of a batch's labels are 1: the bias gradient is mean(p_i) - mean(y_i), so
    sum(y) ~ B (p_bar - g), with p_bar the model's mean probability estimated on any public
    images (early in training the predictions barely depend on the image)."""
    if batch_size < 1 or not 0.0 <= mean_probability <= 1.0:
        raise AttackError("batch_size must be >= 1 and mean_probability in [0, 1]")
    estimate = batch_size * (mean_probability - head_bias_gradient)
    return int(min(batch_size, max(0, round(estimate))))


def _loss(
    model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    import torch
    from torch.func import functional_call

    logits = functional_call(model, params, (x,)).squeeze(-1)
    loss: torch.Tensor = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    return loss


def _batch_order(
    n: int, batch_size: int, steps: int, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """Row indices of each local step, drawn lazily as medfed's loop draws them (so that
    augmentation draws interleave with the permutations on one generator): a fresh permutation
    per pass over the rows, cut into batches; without a generator, rows in order."""
    import torch

    done = 0
    while True:
        perm = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield perm[start : start + batch_size]
            done += 1
