"""Membership inference: does a released model reveal whether a patient was in its training set?

Two attacks on a binary classifier that outputs one logit per row, and the two numbers an audit
reports about either of them:

* **Loss attack** (Yeom et al., CSF 2018, "Privacy Risk in Machine Learning"): a member tends to
  have a lower loss, so the score is minus the loss. *Calibrated* (Watson et al., ICLR 2022, "On
  the Importance of Difficulty Calibration in Membership Inference Attacks"): subtract the loss
  reference models not trained on the row give it, so that rows which are easy for every model
  stop looking like members.
* **Likelihood-ratio attack, offline** (Carlini et al., IEEE S&P 2022, "Membership Inference
  Attacks From First Principles", LiRA, Sec. VI-C): the logit-scaled confidence of the true label,
  phi = log(p / (1 - p)), is about Gaussian over models that did *not* train on a row; fit that
  Gaussian from reference models trained locally without the audited rows, and score how far
  above it the target model's phi lies. With few reference models the paper recommends one
  global variance; that is the default here.

Both are reported as the attack's ROC AUC and its true-positive rate at 1 % false-positive rate
(Carlini et al. argue the latter is what matters: an attack that is confidently right about a few
patients is a real leak even at AUC 0.5). Pure functions of arrays; randomness from a Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.errors import AttackError

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]
LOW_FPR = 0.01


@dataclass(frozen=True)
class AttackSummary:
    """What an audit may tell anyone: aggregate numbers only, never a per-row score."""

    auc: float
    tpr_at_low_fpr: float
    low_fpr: float
    members: int
    non_members: int


def true_label_logit(logits: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """phi = log(p_y / (1 - p_y)) for the true label y: with one logit z for class 1 it is z
    for y = 1 and -z for y = 0, exact and free of the rounding that log(p) suffers near 1."""
    z, y = _pair(logits, labels)
    return np.where(y > 0.5, z, -z)


def bce_loss(logits: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """Per-row binary cross-entropy, log(1 + exp(-phi)), computed stably."""
    return np.logaddexp(0.0, -true_label_logit(logits, labels))


def loss_attack_scores(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    reference_logits: npt.ArrayLike | None = None,
) -> FloatArray:
    """Membership scores (higher = more likely a member): -loss, or with ``reference_logits``
    (models x rows, none trained on these rows) -(loss - mean reference loss)."""
    loss = bce_loss(logits, labels)
    if reference_logits is None:
        return -loss
    reference = _references(reference_logits, len(loss))
    reference_loss: FloatArray = np.stack([bce_loss(r, labels) for r in reference]).mean(axis=0)
    return -(loss - reference_loss)


def lira_offline_scores(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    reference_logits: npt.ArrayLike,
    *,
    global_variance: bool = True,
) -> FloatArray:
    """Offline LiRA scores: (phi_target - mu_out) / sigma_out per row, from the OUT reference
    models' phi (models x rows). The paper's one-sided test 1 - Phi(z) is monotone in z, so z
    ranks rows identically and keeps its resolution in the tail where Phi rounds to 1."""
    phi = true_label_logit(logits, labels)
    reference = _references(reference_logits, len(phi))
    if reference.shape[0] < 2:
        raise AttackError("LiRA needs at least 2 reference models to estimate a variance")
    out = np.stack([true_label_logit(r, labels) for r in reference])
    mu = out.mean(axis=0)
    if global_variance:
        sigma = np.full_like(mu, float(np.std(out - mu, ddof=1)))
    else:
        sigma = out.std(axis=0, ddof=1)
    scores: FloatArray = (phi - mu) / np.maximum(sigma, 1e-6)
    return scores


def roc_curve_points(
    scores: npt.ArrayLike, is_member: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """(fpr, tpr) at every distinct score threshold, highest first, starting at (0, 0): the
    curve sklearn's ``roc_curve(..., drop_intermediate=False)`` draws."""
    s, member = _scored(scores, is_member)
    order = np.argsort(-s, kind="stable")
    s, member = s[order], member[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(member)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / member.sum()]
    fpr = np.r_[0.0, fp / (len(member) - member.sum())]
    return fpr.astype(np.float64), tpr.astype(np.float64)


def attack_auc(scores: npt.ArrayLike, is_member: npt.ArrayLike) -> float:
    """Area under the ROC curve (trapezoids, so ties count one half: Mann-Whitney's U / n1 n0)."""
    fpr, tpr = roc_curve_points(scores, is_member)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(scores: npt.ArrayLike, is_member: npt.ArrayLike, fpr: float = LOW_FPR) -> float:
    """The highest true-positive rate at a threshold whose false-positive rate is <= ``fpr``
    (no interpolation: a threshold between tied scores does not exist)."""
    if not 0.0 <= fpr <= 1.0:
        raise AttackError(f"a false-positive rate is in [0, 1], got {fpr}")
    rates, tpr = roc_curve_points(scores, is_member)
    return float(tpr[rates <= fpr].max())


def summarize_attack(
    scores: npt.ArrayLike, is_member: npt.ArrayLike, low_fpr: float = LOW_FPR
) -> AttackSummary:
    """The attack's AUC and TPR at ``low_fpr`` with the sample sizes they rest on."""
    _, member = _scored(scores, is_member)
    positives = int(member.sum())
    return AttackSummary(
        auc=attack_auc(scores, is_member),
        tpr_at_low_fpr=tpr_at_fpr(scores, is_member, low_fpr),
        low_fpr=low_fpr,
        members=positives,
        non_members=len(member) - positives,
    )


def audit_sample(
    members: int, non_members: int, size: int, rng: np.random.Generator
) -> tuple[IndexArray, IndexArray]:
    """Equal-sized random samples (without replacement) of member and non-member row indices,
    at most ``size`` each: a balanced sample, so an AUC of 0.5 means no leak at any base rate."""
    if size < 1:
        raise AttackError(f"an audit sample needs at least 1 row per side, got {size}")
    k = min(size, members, non_members)
    if k < 1:
        raise AttackError(
            f"an audit needs training and held-out rows, got {members} and {non_members}"
        )
    picked = (np.sort(rng.choice(n, size=k, replace=False)) for n in (members, non_members))
    first, second = picked
    return first.astype(np.int64), second.astype(np.int64)


def reference_subsets(
    pool: int, models: int, rng: np.random.Generator, fraction: float = 0.5
) -> list[IndexArray]:
    """Row indices each reference model trains on: independent random ``fraction``s of a pool
    that excludes every audited row (so each reference model is OUT for all of them)."""
    if not 0.0 < fraction <= 1.0:
        raise AttackError(f"reference fraction must be in (0, 1], got {fraction}")
    size = max(1, round(pool * fraction))
    if pool < 2:
        raise AttackError(f"reference models need a pool of at least 2 rows, got {pool}")
    return [np.sort(rng.choice(pool, size=size, replace=False)).astype(np.int64)
            for _ in range(models)]  # fmt: skip


def _pair(logits: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if z.shape != y.shape:
        raise AttackError(f"{len(z)} logits for {len(y)} labels")
    if not np.all(np.isfinite(z)):
        raise AttackError("logits must be finite")
    if not np.all((y == 0) | (y == 1)):
        raise AttackError("labels must be 0 or 1")
    return z, y


def _references(reference_logits: npt.ArrayLike, rows: int) -> FloatArray:
    reference = np.asarray(reference_logits, dtype=np.float64)
    if reference.ndim != 2 or reference.shape[1] != rows:
        raise AttackError(f"reference logits must be (models, {rows}), got shape {reference.shape}")
    return reference


def _scored(
    scores: npt.ArrayLike, is_member: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    member = np.asarray(is_member).reshape(-1)
    if s.shape != member.shape:
        raise AttackError(f"{len(s)} scores for {len(member)} membership labels")
    if not np.all(np.isfinite(s)):
        raise AttackError("attack scores must be finite")
    if not np.all((member == 0) | (member == 1)):
        raise AttackError("membership labels must be 0 or 1")
    member = member.astype(np.int64)
    if member.sum() == 0 or member.sum() == len(member):
        raise AttackError("an attack's ROC needs both members and non-members")
    return s, member
