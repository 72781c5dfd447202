"""Federated evaluation of a committed round, and how the sites' score histograms travel.

Every online site scores the new global model on its held-out split and replies with its own
metrics and its score histogram (:mod:`medfed.training.score_histogram`); the sum of the
histograms gives the metrics over all hospitals' test patients (``*_pooled``, see
:func:`medfed.coordinator.round_metrics.pooled_metrics`). How the histograms get summed:

* a plain study: in the clear, next to each site's metrics. A histogram reveals the site's whole
  score distribution per class (prevalence and test size included), more than its AUC does;
* ``secure_aggregation``: under SecAgg+, as the training updates are (stages 1, 2 and 4 as their
  own tasks, stage 3 on the EVALUATE tasks, purpose "evaluate" bound into every key and
  signature): the coordinator learns only the consortium's histogram. Each site's own scalar
  metrics still arrive in the clear. An aborted secure sum costs the pooled metrics only;
* ``--encrypt-metrics`` (CKKS): sites send one ciphertext and nothing in the clear (no histogram).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from medfed.coordinator import encrypted_eval
from medfed.coordinator.models import ServedModels
from medfed.coordinator.round_metrics import pooled_metrics
from medfed.coordinator.rounds import OpenRound
from medfed.coordinator.secure_round import SecureSum, Stages, round_params
from medfed.coordinator.spec import StudySpec
from medfed.errors import SecAggError, TrainingError
from medfed.secagg.messages import EVALUATE_PURPOSE
from medfed.store.records import EncryptedEval
from medfed.training.score_histogram import SCORE_BINS, ScoreHistogram, sum_histograms

log = logging.getLogger("medfed.coordinator")
EvalDispatch = Callable[[OpenRound, Sequence[str], Stages | None], None]
"""Send each node its task of ``round_`` (with a secure-aggregation stage, if any) and wait."""


def run_evaluation(
    spec: StudySpec, round_: OpenRound, nodes: Sequence[str], dispatch: EvalDispatch
) -> dict[str, float]:
    """Run ``round_``'s EVALUATE tasks on ``nodes``; return the pooled metrics ({} if none)."""
    if spec.secure_aggregation and not spec.he_context_sha256 and len(nodes) >= 2:
        histogram = _secure_histogram(spec, round_, nodes, dispatch)
    else:  # one site alone: a "sum" of one would reveal its histogram all the same
        dispatch(round_, nodes, None)
        histogram = sum_histograms(round_.histograms.values())
    return pooled_metrics(round_.per_node, histogram)


def _secure_histogram(
    spec: StudySpec, round_: OpenRound, nodes: Sequence[str], dispatch: EvalDispatch
) -> ScoreHistogram | None:
    """The masked sum of the sites' histograms (counts are exact integers mod 2^32: no fixed
    point, no clipping; 2^32 test rows in one study are far off)."""
    params = round_params(
        spec, round_.study_id, round_.round, nodes, 2 * SCORE_BINS, EVALUATE_PURPOSE
    )
    try:
        words, _ = SecureSum(spec, params, weighted=False).total(round_, dispatch)
        return ScoreHistogram.from_words(words)
    except (SecAggError, TrainingError) as exc:
        log.warning(
            "study %s round %d: secure sum of the score histograms failed, no pooled metrics: %s",
            round_.study_id, round_.round, exc,
        )  # fmt: skip
        return None


def encrypted_sum(models: ServedModels, spec: StudySpec, round_: OpenRound) -> EncryptedEval | None:
    """The stored sum of the sites' CKKS ciphertexts, when the study encrypts its metrics."""
    if not spec.he_context_sha256:
        return None
    try:
        return encrypted_eval.aggregate(models, spec.he_context_sha256, round_.encrypted)
    except SecAggError as exc:
        log.warning("study %s: encrypted evaluation failed: %s", round_.study_id, exc)
        return None
