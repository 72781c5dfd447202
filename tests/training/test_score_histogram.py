import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    recall_score,
    roc_auc_score,
)

from medfed.errors import TrainingError
from medfed.training.score_histogram import (
    SCORE_BINS,
    ScoreHistogram,
    histogram_metrics,
    score_histogram,
    sum_histograms,
)

EDGES = [k / SCORE_BINS for k in range(SCORE_BINS + 1)]
probability = st.one_of(st.floats(0.0, 1.0), st.sampled_from(EDGES), st.sampled_from([0.3, 0.7]))
site = st.lists(st.tuples(st.sampled_from([0.0, 1.0]), probability), min_size=1, max_size=80)
TOL = 1e-9  # float summation order only; the bounds themselves are exact inequalities


def _arrays(rows):
    y, p = zip(*rows, strict=True)
    return np.array(y), np.array(p)


def _bins(p):
    """Each probability's bin, from the grid's definition: bin k = (k/B, (k+1)/B], bin 0 with 0."""
    return np.array([max(0, int(np.ceil(v * SCORE_BINS)) - 1) for v in p])


@settings(max_examples=80, deadline=None)
@given(site)
def test_pooled_auc_is_the_auc_of_binned_scores_and_within_its_bound_of_the_exact_auc(rows):
    y, p = _arrays(rows)
    assume(0 < y.sum() < len(y))
    m = histogram_metrics(score_histogram(y, p))
    assert m["auc"] == pytest.approx(roc_auc_score(y, _bins(p)), abs=TOL)
    assert abs(m["auc"] - roc_auc_score(y, p)) <= m["auc_bin_error"] + TOL


@settings(max_examples=80, deadline=None)
@given(site)
def test_pooled_auprc_is_the_ap_of_binned_scores_and_within_its_bound_of_the_exact_ap(rows):
    y, p = _arrays(rows)
    assume(y.sum() > 0)
    m = histogram_metrics(score_histogram(y, p))
    assert m["auprc"] == pytest.approx(average_precision_score(y, _bins(p)), abs=TOL)
    assert abs(m["auprc"] - average_precision_score(y, p)) <= m["auprc_bin_error"] + TOL


@settings(max_examples=80, deadline=None)
@given(site)
def test_confusion_at_one_half_is_exact(rows):
    y, p = _arrays(rows)
    assume(0 < y.sum() < len(y))
    m = histogram_metrics(score_histogram(y, p))
    predicted = p > 0.5
    assert m["sensitivity"] == pytest.approx(recall_score(y, predicted), abs=TOL)
    assert m["specificity"] == pytest.approx(recall_score(1 - y, ~predicted), abs=TOL)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted), abs=TOL)
    assert m["prevalence"] == pytest.approx(y.mean(), abs=TOL)


@settings(max_examples=40, deadline=None)
@given(st.lists(site, min_size=1, max_size=5))
def test_site_histograms_sum_to_the_histogram_of_the_union(sites):
    pooled = sum_histograms(score_histogram(*_arrays(rows)) for rows in sites)
    union = score_histogram(*_arrays([row for rows in sites for row in rows]))
    assert pooled is not None
    np.testing.assert_array_equal(pooled.positives, union.positives)
    np.testing.assert_array_equal(pooled.negatives, union.negatives)
    assert pooled.total == sum(len(rows) for rows in sites)


def test_bins_are_right_closed_with_one_half_on_an_edge():
    hist = score_histogram(
        np.zeros(6), np.array([0.0, 0.001, 0.0011, 0.5, np.nextafter(0.5, 1), 1.0])
    )
    assert list(np.flatnonzero(hist.negatives)) == [0, 1, 499, 500, 999]
    assert hist.negatives[0] == 2
    assert hist.positives.sum() == 0


def test_known_answer_with_ties_in_one_bin():
    # positives at 0.9, 0.9, 0.2; negatives at 0.9, 0.1: of 6 pairs 3 won, 2 tied in a bin
    hist = score_histogram(np.array([1, 1, 1, 0, 0.0]), np.array([0.9, 0.9, 0.2, 0.9, 0.1]))
    m = histogram_metrics(hist)
    assert m["auc"] == pytest.approx((3 + 2 * 0.5) / 6)
    assert m["auc_bin_error"] == pytest.approx(0.5 * 2 / 6)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["auprc"] == pytest.approx(2 / 3 * 2 / 3 + 1 / 3 * 3 / 4)


def test_one_class_leaves_the_undefined_metrics_out():
    only_negatives = histogram_metrics(score_histogram(np.zeros(3), np.array([0.1, 0.6, 0.7])))
    assert set(only_negatives) == {"prevalence", "specificity"}
    assert only_negatives["specificity"] == pytest.approx(1 / 3)
    assert histogram_metrics(sum_histograms([]) or score_histogram(np.zeros(0), np.zeros(0))) == {}


def test_words_round_trip_and_bad_shapes_are_refused():
    hist = score_histogram(np.array([1, 0, 1.0]), np.array([0.2, 0.4, 0.99]))
    back = ScoreHistogram.from_words(hist.as_words())
    np.testing.assert_array_equal(back.positives, hist.positives)
    np.testing.assert_array_equal(back.negatives, hist.negatives)
    with pytest.raises(TrainingError):
        ScoreHistogram(np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(TrainingError):
        score_histogram(np.zeros(1), np.array([1.5]))
