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

Each entry also declares whether the strategy composes with secure aggregation, which reveals only
the (example-weighted) sum of the updates. That one declaration is what submission enforces
(``coordinator/secure_round.py``), what ``medfed study strategies`` prints, and what the README's
strategy table must say (tests/strategies/test_strategy_registry.py compares them).
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


@dataclass(frozen=True)
class SecureAggregation:
    """Whether a strategy runs when only the sum of the updates is visible, and why (not)."""

    composes: bool
    why: str


def _sum_only(why: str) -> SecureAggregation:
    return SecureAggregation(True, why)


def _refused(why: str) -> SecureAggregation:
    return SecureAggregation(False, why)


_NEEDS_EACH = _refused("needs each hospital's own update, which secure aggregation hides")
_FEDOPT_SUM = _sum_only("the server optimizer steps on the mean change, a function of the sum")


@dataclass(frozen=True)
class _Entry:
    required: frozenset[str]
    optional: Mapping[str, float]
    build: Build
    secure: SecureAggregation


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


_REGISTRY: dict[str, _Entry] = {
    "fedavg": _Entry(
        frozenset(), {}, lambda p, c: FedAvg(), _sum_only("the weighted sum is all it needs")
    ),
    "fedprox": _Entry(
        frozenset({"mu"}),
        {},
        lambda p, c: FedProx(p["mu"]),
        _sum_only("the proximal term acts at the site; the server averages"),
    ),
    "scaffold": _Entry(
        frozenset(),
        {"server_learning_rate": 1.0},
        lambda p, c: Scaffold(p["server_learning_rate"]),
        _sum_only("control-variate changes are summed like the model"),
    ),
    "fednova": _Entry(
        frozenset(),
        {},
        lambda p, c: FedNova(),
        _refused("normalizes each site's change by that site's local steps before averaging"),
    ),
    "fedadam": _Entry(
        frozenset({"server_learning_rate"}), _FEDOPT_DEFAULTS, _fedopt("adam"), _FEDOPT_SUM
    ),
    "fedyogi": _Entry(
        frozenset({"server_learning_rate"}), _FEDOPT_DEFAULTS, _fedopt("yogi"), _FEDOPT_SUM
    ),
    "fedadagrad": _Entry(
        frozenset({"server_learning_rate"}), _FEDOPT_DEFAULTS, _fedopt("adagrad"), _FEDOPT_SUM
    ),
    "qfedavg": _Entry(
        frozenset({"q"}),
        {"lipschitz": 0.0},
        lambda p, c: QFedAvg(p["q"], p["lipschitz"] or _lipschitz(c)),
        _refused("weighs each site by its own loss and update norm"),
    ),
    "cyclic": _Entry(
        frozenset(),
        {"deterministic": 0.0},
        lambda p, c: Cyclic(c.seed, bool(p["deterministic"])),
        _refused("one site per round: the sum of one update is that hospital's update"),
    ),
    "median": _Entry(frozenset(), {}, lambda p, c: Median(), _NEEDS_EACH),
    "trimmed_mean": _Entry(
        frozenset({"trim"}), {}, lambda p, c: TrimmedMean(_integer(p, "trim")), _NEEDS_EACH
    ),
    "krum": _Entry(
        frozenset({"f"}),
        {"m": 1.0},
        lambda p, c: Krum(_integer(p, "f"), _integer(p, "m")),
        _NEEDS_EACH,
    ),
    "normbound": _Entry(
        frozenset({"max_norm"}),
        {},
        lambda p, c: NormBound(p["max_norm"]),
        _sum_only("each node clips its own change before masking; the mean stays in the bound"),
    ),
    "dpfedavg": _Entry(
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
        _sum_only("only with distributed = 1 (the sites add the noise) and adaptive = 0"),
    ),
}
STRATEGY_NAMES = tuple(_REGISTRY)


def strategy_parameters() -> dict[str, tuple[list[str], dict[str, float]]]:
    """Every strategy's (required parameters, optional parameters with defaults)."""
    return {name: (sorted(e.required), dict(e.optional)) for name, e in _REGISTRY.items()}


def secure_aggregation(name: str) -> SecureAggregation:
    """Whether strategy ``name`` composes with secure aggregation, and why (not)."""
    if name not in _REGISTRY:
        raise StrategyError(f"unknown strategy {name!r}; available: {', '.join(STRATEGY_NAMES)}")
    return _REGISTRY[name].secure


def make_strategy(
    name: str, params: Mapping[str, float], context: StudyContext | None = None
) -> Strategy:
    """The strategy ``name`` with ``params``; unknown names and parameters are refused."""
    if name not in _REGISTRY:
        raise StrategyError(f"unknown strategy {name!r}; available: {', '.join(STRATEGY_NAMES)}")
    entry = _REGISTRY[name]
    required, optional = entry.required, entry.optional
    missing = sorted(required - set(params))
    unknown = sorted(set(params) - required - set(optional))
    if missing or unknown:
        allowed = sorted(required) + [f"{k} (optional)" for k in sorted(optional)]
        raise StrategyError(
            f"strategy {name!r} takes parameters {allowed or 'none'}; "
            f"missing {missing}, unknown {unknown}"
        )
    return entry.build({**optional, **params}, context or StudyContext())
