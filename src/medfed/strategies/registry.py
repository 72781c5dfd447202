"""Strategies by name, as a study spec names them; parameters are checked, never passed blindly."""

from __future__ import annotations

from collections.abc import Mapping

from medfed.errors import StrategyError
from medfed.strategies.base import Strategy
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.fedprox import FedProx

_PARAMS: dict[str, frozenset[str]] = {"fedavg": frozenset(), "fedprox": frozenset({"mu"})}
STRATEGY_NAMES = tuple(_PARAMS)


def make_strategy(name: str, params: Mapping[str, float]) -> Strategy:
    """``fedavg`` (no parameters) or ``fedprox`` (``mu`` >= 0, required)."""
    if name not in _PARAMS:
        raise StrategyError(f"unknown strategy {name!r}; available: {', '.join(STRATEGY_NAMES)}")
    expected = _PARAMS[name]
    if set(params) != expected:
        raise StrategyError(
            f"strategy {name!r} takes parameters {sorted(expected) or 'none'}, got {sorted(params)}"
        )
    if name == "fedprox":
        return FedProx(params["mu"])
    return FedAvg()
