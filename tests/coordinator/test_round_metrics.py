from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medfed.coordinator.round_metrics import eval_metrics, pooled_metrics
from medfed.store.state import NodeRoundMetrics
from medfed.training.metrics import binary_metrics
from medfed.training.score_histogram import score_histogram, sum_histograms


def _site(rng: np.random.Generator, n: int, prevalence: float, shift: float):
    y = (rng.random(n) < prevalence).astype(np.float64)
    logits = rng.normal(size=n) + 1.5 * y + shift  # each site scores on its own scale
    return y, logits


def test_pooled_auc_is_the_auc_over_all_sites_patients_not_the_mean_of_site_aucs() -> None:
    rng = np.random.default_rng(7)
    sites = {"big": _site(rng, 400, 0.1, -1.0), "small": _site(rng, 40, 0.6, 1.5)}
    per_node = [
        NodeRoundMetrics(name, "eval", len(y), binary_metrics(y, z))
        for name, (y, z) in sites.items()
    ]
    hists = [score_histogram(y, 1 / (1 + np.exp(-z))) for y, z in sites.values()]

    out = eval_metrics(per_node, selected=2) | pooled_metrics(per_node, sum_histograms(hists))

    y_all = np.concatenate([y for y, _ in sites.values()])
    z_all = np.concatenate([z for _, z in sites.values()])
    exact = roc_auc_score(y_all, z_all)
    assert abs(out["auc_pooled"] - exact) <= out["auc_pooled_bin_error"] + 1e-9
    site_mean = sum(m.metrics["auc"] * m.num_examples for m in per_node) / 440
    assert out["auc_site_mean"] == pytest.approx(site_mean)
    assert "auc" not in out  # no unlabelled AUC: it is one or the other
    assert out["balanced_accuracy_site_mean"] > 0 and "auprc_site_mean" in out
    assert out["prevalence_pooled"] == pytest.approx(y_all.mean())
    assert out["pooled_sites"] == 2.0


def test_pooled_confusion_agrees_with_the_example_weighted_accuracy() -> None:
    rng = np.random.default_rng(3)
    sites = [_site(rng, n, 0.3, 0.0) for n in (50, 120, 9)]
    per_node = [
        NodeRoundMetrics(f"s{i}", "eval", len(y), binary_metrics(y, z))
        for i, (y, z) in enumerate(sites)
    ]
    hist = sum_histograms(score_histogram(y, 1 / (1 + np.exp(-z))) for y, z in sites)
    out = eval_metrics(per_node, selected=3) | pooled_metrics(per_node, hist)
    prevalence = out["prevalence_pooled"]
    pooled_accuracy = (
        prevalence * out["sensitivity_pooled"] + (1 - prevalence) * out["specificity_pooled"]
    )
    assert pooled_accuracy == pytest.approx(out["accuracy"], abs=1e-12)


def test_no_pooled_metrics_unless_the_histograms_count_every_reported_example() -> None:
    y, p = np.array([0, 1, 1, 0.0]), np.array([0.2, 0.9, 0.4, 0.6])
    hist = score_histogram(y, p)
    per_node = [
        NodeRoundMetrics("a", "eval", 4, {"accuracy": 0.5}),
        NodeRoundMetrics("b", "eval", 3, {"accuracy": 1.0}),  # sent no histogram
    ]
    assert pooled_metrics(per_node, hist) == {}
    assert pooled_metrics(per_node[:1], None) == {}
    assert pooled_metrics(per_node[:1], hist)["auc_pooled"] == pytest.approx(0.75)


def test_personal_ratio_metrics_are_labelled_site_means() -> None:
    per_node = [NodeRoundMetrics("a", "eval", 10, {"personal_auc": 0.7, "personal_loss": 0.3})]
    out = eval_metrics(per_node, selected=1)
    assert out["personal_auc_site_mean"] == 0.7 and out["personal_loss"] == 0.3
