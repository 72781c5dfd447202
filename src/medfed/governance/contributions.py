"""How much each site's update was worth in a round: Shapley values over the sites' updates.

The players are the sites whose updates a round aggregated; the utility ``U(S)`` of a coalition
``S`` is the federated evaluation of the model aggregated from ``S``'s updates alone, with
``U(∅)`` the previous global model's (the round had no effect without anyone). Shapley (1953):

    φ_i = Σ_{S ⊆ N\\{i}} |S|! (n - |S| - 1)! / n! · (U(S | {i}) - U(S))

the only split of ``U(N) - U(∅)`` that is efficient (the values sum to it), symmetric (equal
players get equal values), gives a null player (adds nothing to any coalition) zero, and is
additive over utilities. ``exact_shapley`` evaluates all 2^n coalitions (n ≲ 12 in practice);
``gtg_shapley`` estimates it with far fewer evaluations; ``leave_one_out`` is the cheap,
defensible-but-biased alternative (redundant sites each look worthless).

Under secure aggregation the coordinator never sees a single site's update, so none of these can
be computed: there the honest record is participation and example counts only
(``data_size_contributions``), which measures effort, not usefulness.

GTG-Shapley — Liu, Chen, Yu, Gao, Wu, Jin, Shi, Guo, "GTG-Shapley: Efficient and Accurate
Participant Contribution Evaluation in Federated Learning", ACM TIST 13(4), 2022, Algorithm 1:

* Between-round truncation: if ``|U(N) - U(∅)|`` is below ``round_truncation`` the round changed
  the model too little to be worth splitting; every site gets 0 and nothing else is evaluated.
* Guided Monte-Carlo sampling: permutation k puts player ``k mod n`` first and shuffles the rest,
  so every player leads equally often (the first position is where marginal gains are largest
  and most variable).
* Within-round truncation: walking a permutation, once ``|U(N) - U(prefix)|`` is below
  ``permutation_truncation`` the remaining players' marginal gains are taken as 0 and their
  coalitions are not evaluated.
* Convergence: stop when each of the last ``window_per_site * n`` running estimates lies within
  ``tolerance`` (relative, L1) of the current one, or at ``max_permutations``. (A single
  comparison with the estimate n permutations back stops too early: with few players the
  marginal gains take few values and two estimates can coincide by chance.)

Every coalition's utility is evaluated at most once (a cache), since a coalition reached by two
permutations has one value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from types import MappingProxyType

import numpy as np

from medfed.errors import ConfigError

Utility = Callable[[frozenset[str]], float]
"""U(S): the value of the model aggregated from coalition S's updates (S = ∅: the old model)."""

MAX_EXACT_PLAYERS = 16
"""2^16 coalitions is already ~65,000 federated evaluations: beyond this, estimate."""


class CachedUtility:
    """``utility`` evaluated at most once per coalition, counting the evaluations."""

    def __init__(self, utility: Utility) -> None:
        self._utility = utility
        self._seen: dict[frozenset[str], float] = {}

    def __call__(self, coalition: frozenset[str]) -> float:
        if coalition not in self._seen:
            value = float(self._utility(coalition))
            if not math.isfinite(value):
                raise ConfigError(f"the utility of {sorted(coalition)} is not finite: {value}")
            self._seen[coalition] = value
        return self._seen[coalition]

    @property
    def evaluations(self) -> int:
        return len(self._seen)


def exact_shapley(players: Iterable[str], utility: Utility) -> dict[str, float]:
    """Shapley values by the definition, over all 2^n coalitions."""
    names = _players(players)
    if len(names) > MAX_EXACT_PLAYERS:
        raise ConfigError(
            f"exact Shapley over {len(names)} sites needs 2^{len(names)} evaluations; "
            "use gtg_shapley"
        )
    value = CachedUtility(utility)
    n = len(names)
    weight = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    out = {}
    for player in names:
        others = [p for p in names if p != player]
        total = 0.0
        for size in range(n):
            for coalition in combinations(others, size):
                without = frozenset(coalition)
                total += weight[size] * (value(without | {player}) - value(without))
        out[player] = total
    return out


def leave_one_out(players: Iterable[str], utility: Utility) -> dict[str, float]:
    """``U(N) - U(N \\ {i})``: what the round would have lost without site i alone."""
    names = _players(players)
    value = CachedUtility(utility)
    everyone = frozenset(names)
    return {p: value(everyone) - value(everyone - {p}) for p in names}


def data_size_contributions(examples: Mapping[str, int]) -> dict[str, float]:
    """Each site's share of a secure round's examples: all there is to record when secure
    aggregation hides every single update. It is *not* a contribution estimate: a site holding
    pure noise earns as much per example as an honest one, and the ledger should say which kind
    of figure it holds (reputation then counts such rounds as participation only)."""
    if any(n < 0 for n in examples.values()):
        raise ConfigError("example counts are >= 0")
    total = sum(examples.values())
    return {site: (n / total if total else 0.0) for site, n in sorted(examples.items())}


@dataclass(frozen=True)
class GtgConfig:
    """Thresholds are in the utility's units (e.g. AUC points)."""

    round_truncation: float = 1e-4
    permutation_truncation: float = 1e-4
    tolerance: float = 0.01
    window_per_site: int = 5
    """Converged: the last ``window_per_site * n`` estimates all lie within ``tolerance``."""
    max_permutations: int = 500

    def __post_init__(self) -> None:
        for name in ("round_truncation", "permutation_truncation", "tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"GTG-Shapley {name} must be a finite number >= 0")
        if self.window_per_site < 1:
            raise ConfigError("GTG-Shapley window_per_site must be >= 1")
        if self.max_permutations < 1:
            raise ConfigError("GTG-Shapley max_permutations must be >= 1")


@dataclass(frozen=True)
class ShapleyEstimate:
    values: Mapping[str, float]
    permutations: int
    evaluations: int
    converged: bool
    truncated_round: bool
    """True: the whole round was below ``round_truncation`` and every value is 0."""


def gtg_shapley(
    players: Iterable[str],
    utility: Utility,
    rng: np.random.Generator,
    config: GtgConfig = GtgConfig(),
) -> ShapleyEstimate:
    """GTG-Shapley's estimate of the Shapley values (Liu et al. 2022, Algorithm 1)."""
    names = _players(players)
    value = CachedUtility(utility)
    everyone = frozenset(names)
    full, empty = value(everyone), value(frozenset())
    if abs(full - empty) < config.round_truncation:
        zeros = MappingProxyType(dict.fromkeys(names, 0.0))
        return ShapleyEstimate(zeros, 0, value.evaluations, True, True)
    n = len(names)
    window = config.window_per_site * n
    estimate = np.zeros(n)
    history: list[np.ndarray] = []
    converged = False
    k = 0
    while k < config.max_permutations:
        k += 1
        order = _guided_permutation(n, k, rng)
        gains = _walk(order, names, value, full, empty, config.permutation_truncation)
        estimate += (gains - estimate) / k
        history.append(estimate.copy())
        if k > window and _moved(history, window) <= config.tolerance:
            converged = True
            break
    values = MappingProxyType({p: float(v) for p, v in zip(names, estimate, strict=True)})
    return ShapleyEstimate(values, k, value.evaluations, converged, False)


def _guided_permutation(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """Player ``(k - 1) mod n`` first, the others in random order."""
    first = (k - 1) % n
    rest = [i for i in range(n) if i != first]
    rng.shuffle(rest)
    return [first, *rest]


def _walk(
    order: list[int],
    names: list[str],
    value: CachedUtility,
    full: float,
    empty: float,
    truncation: float,
) -> np.ndarray:
    """Each player's marginal gain along one permutation, truncated once the prefix is within
    ``truncation`` of the grand coalition."""
    gains = np.zeros(len(names))
    previous = empty
    prefix: frozenset[str] = frozenset()
    for index in order:
        prefix = prefix | {names[index]}
        current = previous if abs(full - previous) < truncation else value(prefix)
        gains[index] = current - previous
        previous = current
    return gains


def _moved(history: list[np.ndarray], window: int) -> float:
    """The largest relative L1 distance of the last ``window`` estimates from the current one."""
    now = history[-1]
    scale = float(np.abs(now).sum())
    if scale == 0:
        return math.inf
    return max(float(np.abs(now - then).sum()) for then in history[-1 - window : -1]) / scale


def _players(players: Iterable[str]) -> list[str]:
    names = sorted(players)
    if not names:
        raise ConfigError("a contribution needs at least one site")
    if len(set(names)) != len(names):
        raise ConfigError(f"sites must be distinct, got {names}")
    return names
