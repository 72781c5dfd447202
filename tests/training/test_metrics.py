import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, average_precision_score, log_loss, roc_auc_score

from medfed.errors import TrainingError
from medfed.training.metrics import (
    accuracy,
    auc_from_counts,
    average_precision,
    average_precision_from_counts,
    balanced_accuracy,
    bce_loss,
    binary_metrics,
    roc_auc,
    sigmoid,
)

labels = st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels, st.data())
def test_auc_matches_sklearn_including_ties(y, draw):
    y = np.array(y)
    scores = np.array(draw.draw(st.lists(st.integers(0, 5), min_size=len(y), max_size=len(y))))
    expected = roc_auc_score(y, scores) if len(set(y)) == 2 else 0.5
    assert roc_auc(y, scores.astype(float)) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labels, st.data())
def test_accuracy_and_loss_match_sklearn(y, draw):
    y = np.array(y)
    p = np.array(draw.draw(st.lists(st.floats(0.01, 0.99), min_size=len(y), max_size=len(y))))
    assert accuracy(y, p) == pytest.approx(accuracy_score(y, p > 0.5))
    assert bce_loss(y, p) == pytest.approx(log_loss(y, p, labels=[0, 1]), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(labels, st.data())
def test_average_precision_matches_sklearn_including_ties(y, draw):
    y = np.array(y)
    scores = np.array(draw.draw(st.lists(st.integers(0, 5), min_size=len(y), max_size=len(y))))
    if y.sum() == 0:
        assert average_precision(y, scores.astype(float)) is None
        return
    expected = average_precision_score(y, scores)
    assert average_precision(y, scores.astype(float)) == pytest.approx(expected, abs=1e-12)


def test_always_negative_scores_high_accuracy_but_half_balanced_accuracy():
    y = np.array([1.0] * 14 + [0.0] * 86)
    never = np.full(100, 0.1)
    assert accuracy(y, never) == pytest.approx(0.86)
    assert balanced_accuracy(y, never) == pytest.approx(0.5)
    assert average_precision(y, never) == pytest.approx(0.14)


def test_balanced_accuracy_known_answer():
    y = np.array([1, 1, 1, 1, 0, 0.0])
    p = np.array([0.9, 0.8, 0.2, 0.5, 0.1, 0.7])  # 0.5 is not above the threshold
    assert balanced_accuracy(y, p) == pytest.approx((2 / 4 + 1 / 2) / 2)


def test_metrics_undefined_for_one_class_are_left_out():
    negatives = binary_metrics(np.zeros(3), np.array([-1.0, 0.0, 2.0]))
    assert set(negatives) == {"accuracy", "loss"}
    positives = binary_metrics(np.ones(3), np.array([-1.0, 0.0, 2.0]))
    assert set(positives) == {"accuracy", "loss", "auprc"} and positives["auprc"] == 1.0


def test_one_class_auc_is_half():
    assert roc_auc(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4])) == 0.5


def test_sigmoid_is_finite_at_extremes():
    z = np.array([-1000.0, -3.0, 0.0, 3.0, 1000.0])
    p = sigmoid(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[1:4], 1 / (1 + np.exp(-z[1:4])))
    assert np.isfinite(binary_metrics(np.array([0, 1, 0, 1, 1.0]), z)["loss"])


@pytest.mark.parametrize(
    ("y", "p"),
    [(np.zeros(0), np.zeros(0)), (np.zeros(2), np.zeros(3)), (np.zeros(1), np.array([np.nan]))],
)
def test_bad_inputs_are_refused(y, p):
    with pytest.raises(TrainingError):
        accuracy(y, p)


def test_a_perfect_ranking_scores_exactly_one_despite_float_rounding():
    # Unclamped, this step sum is 1.0000000000000002 in float64 (seen live: the coordinator
    # refused a site's AUPRC of 1.0000000000000002 as out of range).
    positives = np.array([0.0, 1.0, 3.0, 0.0, 2.0, 1.0, 3.0])
    negatives = np.array([3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for value in (
        average_precision_from_counts(positives, negatives),
        auc_from_counts(positives, negatives),
    ):
        assert value == 1.0
