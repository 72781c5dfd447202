"""Binary-classification metrics in plain numpy, so any process can compute them without torch."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medfed.errors import TrainingError

FloatArray = npt.NDArray[np.floating]
_EPS = 1e-12


def accuracy(y_true: FloatArray, probability: FloatArray, threshold: float = 0.5) -> float:
    """Share of rows whose prediction ``probability > threshold`` equals the 0/1 label."""
    y, p = _check(y_true, probability)
    return float(np.mean((p > threshold) == (y == 1)))


def roc_auc(y_true: FloatArray, score: FloatArray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic, ties at half credit.

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives' ranks
    with tied scores given their average rank (Hanley & McNeil, 1982). With one class only the AUC
    is undefined; we return 0.5 (no discrimination) so averages over sites stay finite.
    """
    y, s = _check(y_true, score)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = _average_ranks(s)
    r_pos = float(ranks[y == 1].sum())
    return (r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


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
    """``accuracy``, ``auc`` and ``loss`` from raw model outputs (logits)."""
    p = sigmoid(logits)
    return {
        "accuracy": accuracy(y_true, p),
        "auc": roc_auc(y_true, p),
        "loss": bce_loss(y_true, p),
    }


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
