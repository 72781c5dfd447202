"""Adaptive server optimizers: FedAdagrad, FedYogi and FedAdam.

Reddi et al., ICLR 2021, "Adaptive Federated Optimization", Algorithm 2. The server treats
``delta = mean(client models) - x`` as a pseudo-gradient (already pointing downhill) and applies
one adaptive step per round:

    m = beta1 * m + (1 - beta1) * delta
    v = v + delta^2                                          (FedAdagrad)
    v = v - (1 - beta2) * delta^2 * sign(v - delta^2)        (FedYogi)
    v = beta2 * v + (1 - beta2) * delta^2                    (FedAdam)
    x = x + learning_rate * m / (sqrt(v) + tau)

There is no bias correction, as in the paper and in FLamby. The starting ``m`` and ``v`` are the
caller's: the paper starts both at 0, while Flower and FLamby start ``v`` at ``tau**2``;
``initial_state`` gives the latter. Starting at ``v >= 0`` keeps ``v >= 0`` for all three rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from medfed.errors import StrategyError
from medfed.strategies.robust import flatten, flatten_like, unflatten

Float64Array = npt.NDArray[np.float64]
Update = Mapping[str, npt.ArrayLike]
State = dict[str, Float64Array]
OptimizerKind = Literal["adam", "yogi", "adagrad"]


@dataclass(frozen=True)
class ServerOptimizerConfig:
    """Hyperparameters of Algorithm 2; the defaults are the paper's (tau is its epsilon)."""

    kind: OptimizerKind
    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if self.kind not in get_args(OptimizerKind):
            raise StrategyError(
                f"server optimizer kind must be one of {get_args(OptimizerKind)}, got {self.kind!r}"
            )
        _check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        _check_real(self.beta1, "beta1", low=0.0, high=1.0)
        _check_real(self.beta2, "beta2", low=0.0, high=1.0)
        _check_real(self.tau, "tau", low=0.0, low_open=True)


def initial_state(x: Update, tau: float) -> tuple[State, State]:
    """``(m, v)`` as Flower and FLamby start them: ``m = 0`` and ``v = tau**2`` everywhere."""
    _check_real(tau, "tau", low=0.0, low_open=True)
    vector = flatten(x)
    return unflatten(np.zeros_like(vector), x), unflatten(np.full_like(vector, tau**2), x)


def server_step(
    config: ServerOptimizerConfig, x: Update, delta: Update, m: Update, v: Update
) -> tuple[State, State, State]:
    """One round of Algorithm 2; returns ``(new_x, new_m, new_v)`` as float64 tensors.

    ``delta``, ``m`` and ``v`` must have ``x``'s layout, be finite, and ``v`` must be >= 0.
    """
    xv = flatten(x)
    dv = flatten_like(delta, x, "delta")
    mv = flatten_like(m, x, "m")
    vv = flatten_like(v, x, "v")
    if bool((vv < 0).any()):
        raise StrategyError("the second-moment state v must be >= 0 everywhere")
    b1, b2 = float(config.beta1), float(config.beta2)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        new_m = b1 * mv + (1.0 - b1) * dv
        d2 = dv * dv
        if config.kind == "adagrad":
            new_v = vv + d2
        elif config.kind == "yogi":
            new_v = vv - (1.0 - b2) * d2 * np.sign(vv - d2)
        else:
            new_v = b2 * vv + (1.0 - b2) * d2
        new_x = xv + float(config.learning_rate) * new_m / (np.sqrt(new_v) + float(config.tau))
    for name, values in (("x", new_x), ("m", new_m), ("v", new_v)):
        if not bool(np.isfinite(values).all()):
            raise StrategyError(
                f"the {config.kind} server step overflowed: new {name} is not finite"
            )
    return unflatten(new_x, x), unflatten(new_m, x), unflatten(new_v, x)


def _check_real(
    value: object,
    what: str,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
) -> None:
    """Require a finite real in ``[low, high)`` (``(low, high)`` when ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise StrategyError(f"{what} must be a number, got {value!r}")
    number = float(value)
    above = number > low if low_open else number >= low
    if not (math.isfinite(number) and above and number < high):
        bracket = "(" if low_open else "["
        raise StrategyError(f"{what} must be finite and in {bracket}{low}, {high}), got {value!r}")
