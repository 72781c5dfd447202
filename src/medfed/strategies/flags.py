"""A robust aggregator's evidence against single hospitals in one round: Krum left their update
out (``krum_outlier``), norm bounding clipped it (``norm_clipped``). The round's ledger entry
records the flags and reputation weighs them (:mod:`medfed.governance.reputation`); a flag is
evidence, never a sanction by itself."""

from __future__ import annotations

from medfed.strategies.accumulators import KeepAll
from medfed.strategies.base import Strategy
from medfed.strategies.byzantine import BoundedSums, Krum


def round_flags(strategy: Strategy, acc: object) -> dict[str, tuple[str, ...]]:
    """Per node, what the aggregation that just ran held against its update."""
    flags: dict[str, list[str]] = {}
    if isinstance(strategy, Krum) and isinstance(acc, KeepAll) and strategy.last_selected:
        chosen = set(strategy.last_selected)
        for index, kept in enumerate(acc.replies):
            if index not in chosen:
                flags.setdefault(kept.node, []).append("krum_outlier")
    if isinstance(acc, BoundedSums):
        for node in acc.clipped_nodes:
            flags.setdefault(node, []).append("norm_clipped")
    return {node: tuple(codes) for node, codes in sorted(flags.items())}
