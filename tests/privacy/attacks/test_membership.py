import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from medfed.errors import AttackError
from medfed.privacy.attacks import membership as mi


def _scores(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    member = rng.integers(0, 2, n)
    member[:2] = [0, 1]
    scores = rng.normal(size=n) + 0.8 * member
    scores[::7] = np.round(scores[::7], 1)  # ties
    return scores, member


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_points_equal_sklearn(seed: int) -> None:
    scores, member = _scores(seed)
    fpr, tpr = mi.roc_curve_points(scores, member)
    ref_fpr, ref_tpr, _ = roc_curve(member, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert mi.attack_auc(scores, member) == pytest.approx(roc_auc_score(member, scores))


@pytest.mark.parametrize("seed", [0, 1])
def test_tpr_at_low_fpr_is_sklearn_curve_at_that_fpr(seed: int) -> None:
    scores, member = _scores(seed, 2000)
    ref_fpr, ref_tpr, _ = roc_curve(member, scores)
    assert mi.tpr_at_fpr(scores, member, 0.01) == pytest.approx(ref_tpr[ref_fpr <= 0.01].max())


def test_known_answers() -> None:
    member = np.array([1, 1, 0, 0])
    assert mi.attack_auc([4, 3, 2, 1], member) == 1.0
    assert mi.attack_auc([1, 2, 3, 4], member) == 0.0
    assert mi.attack_auc([1, 1, 1, 1], member) == 0.5
    assert mi.tpr_at_fpr([4, 3, 2, 1], member, 0.0) == 1.0
    assert mi.tpr_at_fpr([4, 1, 3, 2], member, 0.0) == 0.5
    summary = mi.summarize_attack([4, 1, 3, 2], member)
    assert (summary.members, summary.non_members, summary.auc) == (2, 2, 0.5)


def test_loss_and_phi() -> None:
    logits, labels = np.array([2.0, 2.0, -30.0]), np.array([1, 0, 0])
    np.testing.assert_allclose(mi.true_label_logit(logits, labels), [2.0, -2.0, 30.0])
    p = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(mi.bce_loss(logits, labels)[:2], [-np.log(p), -np.log(1 - p)])
    assert mi.bce_loss(logits, labels)[2] == pytest.approx(np.exp(-30.0), rel=1e-6)
    reference = np.array([[2.0, 2.0, -30.0], [2.0, 2.0, -30.0]])
    np.testing.assert_allclose(mi.loss_attack_scores(logits, labels, reference), 0.0, atol=1e-15)


def test_lira_ranks_a_memorised_row_first() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    reference = rng.normal(0.0, 1.0, (8, 50)) * (2 * labels - 1)
    target = reference.mean(axis=0).copy()
    target[7] += 6.0 * (2 * labels[7] - 1)  # much more confident on row 7 than any OUT model
    scores = mi.lira_offline_scores(target, labels, reference)
    assert int(np.argmax(scores)) == 7
    per_row = mi.lira_offline_scores(target, labels, reference, global_variance=False)
    assert int(np.argmax(per_row)) == 7


def test_samples_are_balanced_and_distinct() -> None:
    rng = np.random.default_rng(0)
    members, others = mi.audit_sample(100, 30, 50, rng)
    assert len(members) == len(others) == 30
    assert len(set(members.tolist())) == 30 and members.max() < 100 and others.max() < 30
    subsets = mi.reference_subsets(40, 4, rng)
    assert [len(s) for s in subsets] == [20] * 4


@pytest.mark.parametrize(
    "call",
    [
        lambda: mi.attack_auc([1.0, 2.0], [1, 1]),
        lambda: mi.attack_auc([1.0, np.nan], [0, 1]),
        lambda: mi.attack_auc([1.0, 2.0, 3.0], [0, 1]),
        lambda: mi.bce_loss([1.0], [2]),
        lambda: mi.lira_offline_scores([1.0], [1], [[1.0]]),
        lambda: mi.audit_sample(10, 0, 5, np.random.default_rng(0)),
        lambda: mi.tpr_at_fpr([1.0, 2.0], [0, 1], 1.5),
    ],
)
def test_bad_inputs_are_refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AttackError):
        call()


def _fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 300) -> np.ndarray:
    """Unregularised logistic regression with more features than rows: it memorises."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 1.0 * x.T @ (p - y) / len(y)
    return w


def test_lira_and_loss_attack_find_the_members_of_an_overfit_model() -> None:
    rng = np.random.default_rng(0)
    d = 120
    x = rng.normal(size=(400, d)) / np.sqrt(d)
    y = (rng.random(400) < 0.5).astype(float)  # labels are noise: only memorising fits them
    members, others, pool = np.arange(0, 60), np.arange(60, 120), np.arange(120, 400)
    target = _fit_logistic(x[members], y[members])
    audited = np.r_[members, others]
    is_member = np.r_[np.ones(60), np.zeros(60)]
    references = []
    for subset in mi.reference_subsets(len(pool), 8, rng, fraction=60 / len(pool)):
        w = _fit_logistic(x[pool[subset]], y[pool[subset]])
        references.append(x[audited] @ w)
    logits, labels = x[audited] @ target, y[audited]
    lira = mi.summarize_attack(mi.lira_offline_scores(logits, labels, references), is_member)
    loss = mi.summarize_attack(mi.loss_attack_scores(logits, labels), is_member)
    assert lira.auc > 0.8
    assert loss.auc > 0.8
    assert lira.members == lira.non_members == 60
