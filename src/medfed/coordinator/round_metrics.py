"""A round's metrics from its hospitals' replies: example-weighted means, the spread across
hospitals a consortium watches, and the pooled metrics of the summed score histograms (pure
functions over what the round collected).

Each name says what the number is. ``accuracy`` and ``loss`` are means over rows, so their
example-weighted mean over sites *is* their value over all hospitals' test patients. AUC, AUPRC
and balanced accuracy are not: their weighted mean is ``<name>_site_mean``, and their value over
all test patients, from the summed histograms, is ``<name>_pooled`` (``<name>_pooled_bin_error``
bounds what the 1000 bins cost, see :mod:`medfed.training.score_histogram`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medfed.store.state import NodeRoundMetrics
from medfed.training.metrics import NOT_POOLABLE
from medfed.training.score_histogram import ScoreHistogram, histogram_metrics

SPREAD_METRICS = ("accuracy", "auc", "loss")
PER_SITE_ONLY = frozenset({"epsilon", "epsilon_budget_left", "delta"})
DATA_STATE = frozenset({"consented_n", "consent_watermark"})
"""What an OMOP site read for the round: its consented patients and consent-log position. Per
site (shown per hospital); the round records the consented total."""


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
    consented = [m.metrics["consented_n"] for m in per_node if "consented_n" in m.metrics]
    if consented:
        out["consented_n"] = float(sum(consented))
    for key in sorted(set(keys) - PER_SITE_ONLY - DATA_STATE):
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
        out[_site_mean_name(key)] = value
        if key in SPREAD_METRICS:
            values = np.array([m.metrics[key] for m in per_node if key in m.metrics])
            out[f"{key}_min"] = float(values.min())
            out[f"{key}_max"] = float(values.max())
            out[f"{key}_std"] = float(values.std())
    return out


def pooled_metrics(
    per_node: Sequence[NodeRoundMetrics], histogram: ScoreHistogram | None
) -> dict[str, float]:
    """``<metric>_pooled`` over all the evaluated sites' test patients, from the sum of their
    score histograms; {} unless that sum counts exactly the examples the sites reported (a site
    that sent none, or a masked sum that does not add up, would make "pooled" a lie)."""
    reported = sum(m.num_examples for m in per_node)
    if histogram is None or reported == 0 or histogram.total != reported:
        return {}
    out = {"pooled_sites": float(len(per_node))}
    for key, value in histogram_metrics(histogram).items():
        base, bound, _ = key.partition("_bin_error")
        out[f"{base}_pooled{bound}"] = value
    return out


def _site_mean_name(key: str) -> str:
    return f"{key}_site_mean" if key.removeprefix("personal_") in NOT_POOLABLE else key
