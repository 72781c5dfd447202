"""Binary-classification metrics in plain numpy, so any process can compute them without torch."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medfed.errors import TrainingError

FloatArray = npt.NDArray[np.floating]
_EPS = 1e-12
NOT_POOLABLE = frozenset({"auc", "auprc", "balanced_accuracy"})
"""Metrics whose example-weighted mean over sites is not their value over all the sites' rows
(accuracy and loss are means over rows, so theirs is): AUC ranks pairs, AUPRC orders all rows,
balanced accuracy averages two per-class rates. Reported as ``<name>_site_mean`` when averaged."""


def accuracy(y_true: FloatArray, probability: FloatArray, threshold: float = 0.5) -> float:
    """Share of rows whose prediction ``probability > threshold`` equals the 0/1 label."""
    y, p = _check(y_true, probability)
    return float(np.mean((p > threshold) == (y == 1)))


def roc_auc(y_true: FloatArray, score: FloatArray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic, ties at half credit.

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives' ranks
    with tied scores given their average rank (Hanley & McNeil, 1982). With one class only the AUC
    is undefined; we return 0.5 (no discrimination), and :func:`binary_metrics` leaves it out.
    """
    y, s = _check(y_true, score)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = _average_ranks(s)
    r_pos = float(ranks[y == 1].sum())
    return (r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def balanced_accuracy(
    y_true: FloatArray, probability: FloatArray, threshold: float = 0.5
) -> float | None:
    """Mean of sensitivity and specificity at ``probability > threshold`` (Brodersen et al.,
    ICPR 2010): unlike accuracy it does not reward always predicting the majority class (with
    14 % positives, "always negative" scores 0.86 accuracy but 0.5 balanced accuracy). None when
    the set holds one class only, where one of the two rates is undefined."""
    y, p = _check(y_true, probability)
    positive, predicted = y == 1, p > threshold
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == len(y):
        return None
    sensitivity = float((predicted & positive).sum()) / n_pos
    specificity = float((~predicted & ~positive).sum()) / (len(y) - n_pos)
    return (sensitivity + specificity) / 2.0


def average_precision(y_true: FloatArray, score: FloatArray) -> float | None:
    """Area under the precision-recall curve as average precision, the step sum
    AP = sum_k (R_k - R_(k-1)) P_k over the distinct scores from high to low, tied scores forming
    one step (scikit-learn's ``average_precision_score``; no interpolation, which Davis & Goadrich,
    ICML 2006, show is optimistic). Its chance level is the prevalence, not 0.5. None without
    positives (recall is undefined)."""
    y, s = _check(y_true, score)
    values, group = np.unique(s, return_inverse=True)
    positives = np.bincount(group, weights=y, minlength=len(values))
    negatives = np.bincount(group, weights=1.0 - y, minlength=len(values))
    return average_precision_from_counts(positives, negatives)


def auc_from_counts(positives: npt.ArrayLike, negatives: npt.ArrayLike) -> float | None:
    """Mann-Whitney AUC of rows grouped by score, groups in increasing score order: each
    positive beats the negatives of lower groups and ties those of its own at half credit.
    None with one class only."""
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.cumsum(neg) - neg
    return _unit(float(np.dot(pos, below + 0.5 * neg) / (n_pos * n_neg)))


def average_precision_from_counts(
    positives: npt.ArrayLike, negatives: npt.ArrayLike
) -> float | None:
    """Average precision (see :func:`average_precision`) of rows grouped by score, groups in
    increasing score order: each group is one threshold step. None without positives."""
    pos = np.asarray(positives, dtype=np.float64)[::-1]
    neg = np.asarray(negatives, dtype=np.float64)[::-1]
    n_pos = float(pos.sum())
    if n_pos == 0:
        return None
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    steps = pos > 0  # recall moves only where a group holds positives, so tp + fp > 0 there
    return _unit(float(np.sum(pos[steps] / n_pos * tp[steps] / (tp[steps] + fp[steps]))))


def _unit(value: float) -> float:
    """A proportion computed as a float sum: mathematically in [0, 1], but rounding can land a
    perfect score at 1.0000000000000002, which the coordinator rightly refuses as out of range."""
    return min(1.0, max(0.0, value))


def bce_loss(y_true: FloatArray, probability: FloatArray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-12, 1 - 1e-12] to stay finite."""
    y, p = _check(y_true, probability)
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def sigmoid(logits: FloatArray) -> npt.NDArray[np.float64]:
    """Logistic function in float64, overflow-free for large negative logits."""
    z = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def binary_metrics(y_true: FloatArray, logits: FloatArray) -> dict[str, float]:
    """``accuracy`` and ``loss``, and ``auc``, ``balanced_accuracy`` and ``auprc`` where they are
    defined (both classes present; at least one positive), from raw model outputs (logits): an
    undefined metric is left out rather than reported as a number that would enter site means."""
    p = sigmoid(logits)
    out = {"accuracy": accuracy(y_true, p), "loss": bce_loss(y_true, p)}
    balanced = balanced_accuracy(y_true, p)
    if balanced is not None:  # both classes present
        out["balanced_accuracy"] = balanced
        out["auc"] = roc_auc(y_true, p)
    auprc = average_precision(y_true, p)
    if auprc is not None:
        out["auprc"] = auprc
    return out


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _check(
    y_true: FloatArray, score: FloatArray
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if len(y) != len(s):
        raise TrainingError(f"{len(y)} labels but {len(s)} predictions")
    if len(y) == 0:
        raise TrainingError("metrics of an empty set are undefined")
    if not bool(np.isfinite(s).all()):
        raise TrainingError("predictions hold NaN or infinite values")
    return y, s
