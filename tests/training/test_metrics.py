import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from medfed.errors import TrainingError
from medfed.training.metrics import accuracy, bce_loss, binary_metrics, roc_auc, sigmoid

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
