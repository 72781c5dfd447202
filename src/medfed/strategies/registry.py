"""Strategies by name, as a study spec names them; parameters are checked, never passed blindly.

| name | parameters (required; optional = default) | reference |
|---|---|---|
| fedavg | - | McMahan et al. 2017 |
| fedprox | mu | Li et al. 2020 |
| scaffold | server_learning_rate = 1 | Karimireddy et al. 2020 |
| fednova | - | Wang et al. 2020 |
| fedadam, fedyogi | server_learning_rate; beta1 = 0.9, beta2 = 0.99, tau = 1e-3 | Reddi 2021 |
| fedadagrad | server_learning_rate; beta1 = 0.9 (beta2 unused), tau = 1e-3 | Reddi 2021 |
| qfedavg | q; lipschitz = 1 / (learning_rate x local_steps) | Li et al. 2020 |
| cyclic | deterministic = 0 | FLamby 2022 |
| median | - | Yin et al. 2018 |
| trimmed_mean | trim | Yin et al. 2018 |
| krum | f; m = 1 (m > 1: Multi-Krum) | Blanchard et al. 2017 |
| normbound | max_norm | Sun et al. 2019 |
| dpfedavg | clip_norm, noise_multiplier; distributed = 0, adaptive = 0, ... | McMahan 2018 |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from medfed.errors import StrategyError
from medfed.strategies.base import Strategy
from medfed.strategies.byzantine import Krum, Median, NormBound, TrimmedMean
from medfed.strategies.cyclic import Cyclic
from medfed.strategies.dpfedavg import DpFedAvg
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.fednova import FedNova
from medfed.strategies.fedopt import FedOpt
from medfed.strategies.fedopt_math import OptimizerKind, ServerOptimizerConfig
from medfed.strategies.fedprox import FedProx
from medfed.strategies.qfedavg import QFedAvg
from medfed.strategies.scaffold import Scaffold


@dataclass(frozen=True)
class StudyContext:
    """What some strategies need from the study besides their parameters."""

    seed: int = 0
    learning_rate: float = 0.01
    local_steps: int = 0


Build = Callable[[Mapping[str, float], StudyContext], Strategy]
_FEDOPT_DEFAULTS = {"beta1": 0.9, "beta2": 0.99, "tau": 1e-3}


def _fedopt(kind: str) -> Build:
    def build(p: Mapping[str, float], ctx: StudyContext) -> Strategy:
        config = ServerOptimizerConfig(
            kind=cast(OptimizerKind, kind),
            learning_rate=p["server_learning_rate"],
            beta1=p["beta1"],
            beta2=p["beta2"],
            tau=p["tau"],
        )
        return FedOpt(config)

    return build


def _lipschitz(context: StudyContext) -> float:
    """q-FedAvg's L, by default the inverse of a round's total local step size: the paper's 1/lr
    assumes one local step, and with K steps it shrinks every update about K-fold."""
    return 1.0 / (context.learning_rate * max(1, context.local_steps))


def _integer(p: Mapping[str, float], key: str) -> int:
    value = p[key]
    if value != int(value):
        raise StrategyError(f"strategy parameter {key!r} must be a whole number, got {value}")
    return int(value)


_REGISTRY: dict[str, tuple[frozenset[str], Mapping[str, float], Build]] = {
    "fedavg": (frozenset(), {}, lambda p, c: FedAvg()),
    "fedprox": (frozenset({"mu"}), {}, lambda p, c: FedProx(p["mu"])),
    "scaffold": (
        frozenset(),
        {"server_learning_rate": 1.0},
        lambda p, c: Scaffold(p["server_learning_rate"]),
    ),
    "fednova": (frozenset(), {}, lambda p, c: FedNova()),
    "fedadam": (frozenset({"server_learning_rate"}), _FEDOPT_DEFAULTS, _fedopt("adam")),
    "fedyogi": (frozenset({"server_learning_rate"}), _FEDOPT_DEFAULTS, _fedopt("yogi")),
    "fedadagrad": (frozenset({"server_learning_rate"}), _FEDOPT_DEFAULTS, _fedopt("adagrad")),
    "qfedavg": (
        frozenset({"q"}),
        {"lipschitz": 0.0},
        lambda p, c: QFedAvg(p["q"], p["lipschitz"] or _lipschitz(c)),
    ),
    "cyclic": (
        frozenset(),
        {"deterministic": 0.0},
        lambda p, c: Cyclic(c.seed, bool(p["deterministic"])),
    ),
    "median": (frozenset(), {}, lambda p, c: Median()),
    "trimmed_mean": (frozenset({"trim"}), {}, lambda p, c: TrimmedMean(_integer(p, "trim"))),
    "krum": (
        frozenset({"f"}),
        {"m": 1.0},
        lambda p, c: Krum(_integer(p, "f"), _integer(p, "m")),
    ),
    "normbound": (frozenset({"max_norm"}), {}, lambda p, c: NormBound(p["max_norm"])),
    "dpfedavg": (
        frozenset({"clip_norm", "noise_multiplier"}),
        {
            "distributed": 0.0,
            "adaptive": 0.0,
            "target_quantile": 0.5,
            "clip_learning_rate": 0.2,
            "delta": 1e-5,
        },
        lambda p, c: DpFedAvg(
            p["clip_norm"],
            p["noise_multiplier"],
            distributed=bool(p["distributed"]),
            adaptive=bool(p["adaptive"]),
            target_quantile=p["target_quantile"],
            clip_learning_rate=p["clip_learning_rate"],
            delta=p["delta"],
        ),
    ),
}
STRATEGY_NAMES = tuple(_REGISTRY)


def strategy_parameters() -> dict[str, tuple[list[str], dict[str, float]]]:
    """Every strategy's (required parameters, optional parameters with defaults)."""
    return {name: (sorted(req), dict(opt)) for name, (req, opt, _) in _REGISTRY.items()}


def make_strategy(
    name: str, params: Mapping[str, float], context: StudyContext | None = None
) -> Strategy:
    """The strategy ``name`` with ``params``; unknown names and parameters are refused."""
    if name not in _REGISTRY:
        raise StrategyError(f"unknown strategy {name!r}; available: {', '.join(STRATEGY_NAMES)}")
    required, optional, build = _REGISTRY[name]
    missing = sorted(required - set(params))
    unknown = sorted(set(params) - required - set(optional))
    if missing or unknown:
        allowed = sorted(required) + [f"{k} (optional)" for k in sorted(optional)]
        raise StrategyError(
            f"strategy {name!r} takes parameters {allowed or 'none'}; "
            f"missing {missing}, unknown {unknown}"
        )
    return build({**optional, **params}, context or StudyContext())


def require_sum_only(strategy: Strategy) -> None:
    """Refuse a strategy that needs individual updates where only their sum will be visible
    (secure aggregation): median, trimmed mean and Krum cannot work on a masked sum."""
    if strategy.individual_updates:
        raise StrategyError(
            f"strategy {strategy.name!r} needs each hospital's own update, which secure "
            "aggregation hides; use fedavg, fedprox, scaffold, fednova, fedadam/fedyogi/"
            "fedadagrad, qfedavg or normbound (clipping applied by each node) instead"
        )
