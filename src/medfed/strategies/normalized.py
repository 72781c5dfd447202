"""Normalized aggregation for heterogeneous sites: FedNova and q-FedAvg.

FedNova (Wang et al., NeurIPS 2020, "Tackling the Objective Inconsistency Problem in Heterogeneous
Federated Optimization", eq. 6-7). A site that runs more local steps moves further, so plain FedAvg
silently optimises a objective skewed towards busy sites. FedNova divides each site's progress by
its number of local steps ``tau_i`` (``a_i = tau_i`` for plain local SGD) and rescales by the
weighted mean step count:

    p_i = n_i / sum n,   d_i = (x - y_i) / tau_i,   tau_eff = sum p_i tau_i,
    x_new = x - tau_eff * sum p_i d_i

With equal ``tau_i`` this is example-weighted FedAvg. ``fednova_from_sums`` gives the same result
from a running weighted mean with weights ``omega_i = n_i / tau_i``, for streaming aggregation.

q-FedAvg (Li et al., ICLR 2020, "Fair Resource Allocation in Federated Learning", Algorithm 2).
Sites with a higher loss ``F_k`` get more weight (``q = 0`` is the plain mean of the models):

    dw_k = L (x - y_k),   Delta_k = F_k^q dw_k,   h_k = q F_k^(q-1) ||dw_k||^2 + L F_k^q,
    x_new = x - sum Delta_k / sum h_k

Everything is computed in float64 and returned as float64; the caller casts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from medfed.errors import StrategyError
from medfed.strategies.robust import flatten, flatten_like, unflatten

Float64Array = npt.NDArray[np.float64]
Update = Mapping[str, npt.ArrayLike]


def fednova(
    x: Update,
    client_models: Sequence[Update],
    num_examples: Sequence[float],
    local_steps: Sequence[float],
) -> dict[str, Float64Array]:
    """FedNova's new global model from the clients' models, example counts and local steps."""
    models = _client_matrix(x, client_models)
    n = _positive_array(num_examples, "num_examples", len(models))
    tau = _positive_array(local_steps, "local_steps", len(models))
    xv = flatten(x)
    p = n / n.sum()
    tau_eff = float(p @ tau)
    with np.errstate(over="ignore", invalid="ignore"):
        d = (xv - models) / tau[:, None]
        new_x = xv - tau_eff * (p @ d)
    return _finite(new_x, x, "FedNova")


def fednova_from_sums(
    x: Update,
    weighted_mean_y: Update,
    sum_omega: float,
    total_examples: float,
    tau_eff: float,
) -> dict[str, Float64Array]:
    """FedNova from streaming sums: ``omega_i = n_i / tau_i``, ``weighted_mean_y`` their mean.

    ``sum p_i d_i = (1 / N) sum omega_i (x - y_i) = (sum_omega / N) (x - weighted_mean_y)``, so
    the caller only needs a weighted running mean of the models (``fedavg.WeightedSum`` with
    weights ``omega_i``), ``sum_omega``, ``N = total_examples`` and ``tau_eff = sum n_i tau_i / N``.
    """
    xv = flatten(x)
    yv = flatten_like(weighted_mean_y, x, "weighted_mean_y")
    omega = _positive(sum_omega, "sum_omega")
    total = _positive(total_examples, "total_examples")
    steps = _positive(tau_eff, "tau_eff")
    with np.errstate(over="ignore", invalid="ignore"):
        new_x = xv - steps * (omega / total) * (xv - yv)
    return _finite(new_x, x, "FedNova")


def qfedavg_terms(
    x: Update, y: Update, loss: float, q: float, lipschitz: float
) -> tuple[float, float]:
    """One client's ``(F^q, h_k)``; ``Delta_k = F^q * L * (x - y)`` follows from the first.

    A streaming caller accumulates ``sum F^q``, ``sum F^q * y`` and ``sum h`` and finishes with
    ``qfedavg_from_sums``.
    """
    f_loss = _positive(loss, "loss")
    q = _check_q(q)
    lip = _positive(lipschitz, "lipschitz")
    with np.errstate(over="ignore", invalid="ignore"):
        dw = lip * (flatten(x) - flatten_like(y, x, "client model"))
        squared_norm = float(dw @ dw)
    try:
        fq = f_loss**q
        curvature = q * f_loss ** (q - 1.0) * squared_norm if q > 0 else 0.0
        h = curvature + lip * fq
    except OverflowError:
        h = math.inf
    if not math.isfinite(h):
        raise StrategyError(f"q-FedAvg terms overflow float64 for loss={loss!r} and q={q!r}")
    return fq, h


def qfedavg(
    x: Update,
    client_models: Sequence[Update],
    losses: Sequence[float],
    q: float,
    lipschitz: float,
) -> dict[str, Float64Array]:
    """q-FedAvg's new global model; ``losses`` are the clients' ``F_k(x)``, all > 0."""
    models = _client_matrix(x, client_models)
    f_losses = _positive_array(losses, "losses", len(models))
    terms = [
        qfedavg_terms(x, y, float(f), q, lipschitz)
        for y, f in zip(client_models, f_losses, strict=True)
    ]
    fq = np.array([t[0] for t in terms])
    with np.errstate(over="ignore", invalid="ignore"):
        sum_fq_y = _finite(fq @ models, x, "q-FedAvg")
    return qfedavg_from_sums(x, sum_fq_y, float(fq.sum()), sum(t[1] for t in terms), lipschitz)


def qfedavg_from_sums(
    x: Update, sum_fq_y: Update, sum_fq: float, sum_h: float, lipschitz: float
) -> dict[str, Float64Array]:
    """q-FedAvg from ``sum_k F_k^q y_k``, ``sum_k F_k^q`` and ``sum_k h_k``.

    ``sum Delta_k = L (sum_fq * x - sum_fq_y)``, so ``x_new = x - that / sum_h``.
    """
    xv = flatten(x)
    sy = flatten_like(sum_fq_y, x, "sum_fq_y")
    s = _positive(sum_fq, "sum_fq")
    h = _positive(sum_h, "sum_h")
    lip = _positive(lipschitz, "lipschitz")
    with np.errstate(over="ignore", invalid="ignore"):
        new_x = xv - lip * (s * xv - sy) / h
    return _finite(new_x, x, "q-FedAvg")


def _client_matrix(x: Update, client_models: Sequence[Update]) -> Float64Array:
    if isinstance(client_models, Mapping) or not isinstance(client_models, Sequence):
        raise StrategyError("client_models must be a sequence of name -> array mappings")
    if not client_models:
        raise StrategyError("cannot aggregate zero client models")
    return np.stack([flatten_like(y, x, f"client model {i}") for i, y in enumerate(client_models)])


def _positive_array(values: Sequence[float], what: str, count: int) -> Float64Array:
    if len(values) != count:
        raise StrategyError(f"{what} has {len(values)} entries for {count} client models")
    return np.array([_positive(v, f"{what}[{i}]") for i, v in enumerate(values)])


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise StrategyError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise StrategyError(f"{what} must be finite and > 0, got {value!r}")
    return number


def _check_q(q: object) -> float:
    if isinstance(q, bool) or not isinstance(q, int | float | np.integer | np.floating):
        raise StrategyError(f"q must be a number, got {q!r}")
    if not (math.isfinite(float(q)) and float(q) >= 0):
        raise StrategyError(f"q must be finite and >= 0, got {q!r}")
    return float(q)


def _finite(vector: Float64Array, like: Update, what: str) -> dict[str, Float64Array]:
    if not bool(np.isfinite(vector).all()):
        raise StrategyError(f"the {what} update overflowed: the new model is not finite")
    return unflatten(vector, like)
