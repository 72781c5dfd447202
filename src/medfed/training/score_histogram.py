"""Pooled metrics over every hospital's test patients, from per-site score histograms.

The AUC of a consortium is not the mean of its sites' AUCs: an AUC ranks every positive against
every negative, and a site mean never ranks a patient of one hospital against a patient of
another. So each site counts its test rows per score bin, positives and negatives apart, on one
fixed grid of ``SCORE_BINS`` (B = 1000) right-closed bins over the predicted probability:

    bin 0 = [0, 1/B],  bin k = (k/B, (k+1)/B]  for k = 1 .. B-1

Counts add across sites (in the clear, under a SecAgg+ masked sum, or under CKKS), and the sum
is the histogram of the union of the test sets, from which:

* ``auc``: the Mann-Whitney AUC with pairs in one bin counted half. Bins are monotone in the
  score, so a pair in different bins is ordered exactly as the scores order it; only pairs that
  share a bin can differ from the exact AUC, each by at most 1/2:

      |AUC_hist - AUC_exact| <= 1/2 * sum_b pos_b * neg_b / (P * N)     (``auc_bin_error``)

  computed from the same histogram, so every pooled AUC comes with its own bound.
* ``auprc``: average precision with one threshold per bin (scikit-learn's step-wise AP of the
  scores rounded to their bins). Within a bin holding p positives, with A true and F false
  positives above it and n negatives beside them, each step's precision lies in
  [(A+1)/(A+F+1+n), (A+p)/(A+F+p)] whatever the order inside the bin, so, with P = sum_b p_b,

      |AP_hist - AP_exact| <= sum_b p_b/P * ((A+p)/(A+F+p) - (A+1)/(A+F+1+n))

  (``auprc_bin_error``; A, F, n of bin b, bins with p_b > 0).

* the confusion at 0.5: with B even, 0.5 is an edge (500/1000, exact in floating point) and
  ``p > 0.5`` is ``bin >= B/2``, so accuracy, sensitivity, specificity and balanced accuracy are
  exact, not approximations.

What a histogram reveals: a site's whole score distribution per class at 1/1000 resolution (its
prevalence and test size included), far more than one AUC. Under secure aggregation it travels
masked and the coordinator sees only the consortium's sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.errors import TrainingError
from medfed.training.metrics import (
    FloatArray,
    auc_from_counts,
    average_precision_from_counts,
)

SCORE_BINS = 1000
"""Bins over [0, 1]; even, so that the 0.5 threshold is a bin edge."""
_EDGES = np.arange(1, SCORE_BINS, dtype=np.float64) / SCORE_BINS
"""Upper edges of bins 0 .. B-2 (k / B is correctly rounded: 0.5 is exact)."""
Counts = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """Test rows per score bin: ``positives[k]`` label-1 rows and ``negatives[k]`` label-0 rows
    whose probability falls in bin k (see the module docstring for the grid)."""

    positives: Counts
    negatives: Counts

    def __post_init__(self) -> None:
        for name, counts in (("positives", self.positives), ("negatives", self.negatives)):
            if counts.shape != (SCORE_BINS,) or counts.dtype != np.int64:
                raise TrainingError(
                    f"a score histogram's {name} must be {SCORE_BINS} int64 counts, got "
                    f"{counts.dtype} {counts.shape}"
                )
            if bool((counts < 0).any()):
                raise TrainingError(f"a score histogram's {name} holds negative counts")

    @property
    def total(self) -> int:
        return int(self.positives.sum() + self.negatives.sum())

    def as_words(self) -> npt.NDArray[np.uint32]:
        """Positives then negatives as one vector in Z_(2^32), for a masked sum."""
        both = np.concatenate([self.positives, self.negatives])
        if bool((both >= 2**32).any()):
            raise TrainingError("a score histogram's counts do not fit 32 bits")
        return both.astype(np.uint32)

    @classmethod
    def from_words(cls, words: npt.NDArray[np.uint32]) -> ScoreHistogram:
        if words.shape != (2 * SCORE_BINS,):
            raise TrainingError(f"{words.shape} words are not a score histogram")
        counts = words.astype(np.int64)
        return cls(counts[:SCORE_BINS].copy(), counts[SCORE_BINS:].copy())


def score_histogram(y_true: FloatArray, probability: FloatArray) -> ScoreHistogram:
    """The histogram of one site's test set (labels 0/1, probabilities in [0, 1])."""
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(probability, dtype=np.float64).reshape(-1)
    if len(y) != len(p):
        raise TrainingError(f"{len(y)} labels but {len(p)} probabilities")
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise TrainingError("probabilities must lie in [0, 1]")
    bins = np.searchsorted(_EDGES, p, side="left")  # edges strictly below p: right-closed bins
    positive = y == 1
    return ScoreHistogram(
        np.bincount(bins[positive], minlength=SCORE_BINS).astype(np.int64),
        np.bincount(bins[~positive], minlength=SCORE_BINS).astype(np.int64),
    )


def sum_histograms(histograms: Iterable[ScoreHistogram]) -> ScoreHistogram | None:
    """The consortium's histogram; None when no site sent one."""
    items = list(histograms)
    if not items:
        return None
    return ScoreHistogram(
        np.sum([h.positives for h in items], axis=0, dtype=np.int64),
        np.sum([h.negatives for h in items], axis=0, dtype=np.int64),
    )


def histogram_metrics(hist: ScoreHistogram) -> dict[str, float]:
    """``auc``, ``auc_bin_error``, ``auprc``, ``auprc_bin_error``, ``sensitivity``,
    ``specificity``, ``balanced_accuracy`` and ``prevalence`` of the rows the histogram counts;
    a metric undefined for them (one class only) is left out. (Accuracy needs no histogram: the
    example-weighted mean of the sites' accuracies already is the pooled accuracy.)"""
    pos = hist.positives.astype(np.float64)
    neg = hist.negatives.astype(np.float64)
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos + n_neg == 0:
        return {}
    half = SCORE_BINS // 2
    tp, tn = float(pos[half:].sum()), float(neg[:half].sum())
    out = {"prevalence": n_pos / (n_pos + n_neg)}
    if n_pos:
        out["sensitivity"] = tp / n_pos
        out["auprc"] = average_precision_from_counts(pos, neg) or 0.0
        out["auprc_bin_error"] = _ap_bin_error(pos, neg)
    if n_neg:
        out["specificity"] = tn / n_neg
    if n_pos and n_neg:
        out["balanced_accuracy"] = (out["sensitivity"] + out["specificity"]) / 2.0
        out["auc"] = auc_from_counts(pos, neg) or 0.0
        out["auc_bin_error"] = 0.5 * float(np.dot(pos, neg)) / (n_pos * n_neg)
    return out


def _ap_bin_error(pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64]) -> float:
    """The AP bound of the module docstring, bins walked from the highest score down."""
    p, n = pos[::-1], neg[::-1]
    above_tp, above_fp = np.cumsum(p) - p, np.cumsum(n) - n
    has = p > 0
    a, f, p, n = above_tp[has], above_fp[has], p[has], n[has]
    widest = (a + p) / (a + f + p) - (a + 1) / (a + f + 1 + n)
    return float(np.sum(p / pos.sum() * widest))
