"""A round's metrics from its hospitals' replies: example-weighted means, and the spread across
hospitals a consortium watches (pure functions over the per-node rows the round collected)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medfed.store.state import NodeRoundMetrics

SPREAD_METRICS = ("accuracy", "auc", "loss")
PER_SITE_ONLY = frozenset({"epsilon", "epsilon_budget_left", "delta"})


def _weighted(per_node: Sequence[NodeRoundMetrics], key: str) -> float | None:
    pairs = [(m.metrics[key], m.num_examples) for m in per_node if key in m.metrics]
    total = sum(n for _, n in pairs)
    if not pairs or total == 0:
        return None
    return float(sum(v * n for v, n in pairs) / total)


def train_metrics(per_node: Sequence[NodeRoundMetrics], selected: int) -> dict[str, float]:
    out = {"participation": len(per_node) / selected if selected else 0.0}
    out["train_examples"] = float(sum(m.num_examples for m in per_node))
    keys = sorted({k for m in per_node for k in m.metrics})
    for key in PER_SITE_ONLY & set(keys):  # privacy spent is per hospital: report the worst
        out[f"{key}_max"] = max(m.metrics[key] for m in per_node if key in m.metrics)
    for key in sorted(set(keys) - PER_SITE_ONLY):
        value = _weighted(per_node, key)
        if value is not None:
            out[f"train_{key}"] = value
    return out


def eval_metrics(per_node: Sequence[NodeRoundMetrics], selected: int) -> dict[str, float]:
    """Example-weighted global metrics plus the spread across hospitals a consortium watches."""
    out = {"eval_participation": len(per_node) / selected if selected else 0.0}
    out["eval_examples"] = float(sum(m.num_examples for m in per_node))
    for key in sorted({k for m in per_node for k in m.metrics}):
        value = _weighted(per_node, key)
        if value is None or not math.isfinite(value):
            continue
        out[key] = value
        if key in SPREAD_METRICS:
            values = np.array([m.metrics[key] for m in per_node if key in m.metrics])
            out[f"{key}_min"] = float(values.min())
            out[f"{key}_max"] = float(values.max())
            out[f"{key}_std"] = float(values.std())
    return out
