import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.data.heart_disease import heart_disease_centres
from medfed.data.partition import (
    MAX_TRIES,
    dirichlet_label_skew,
    iid,
    natural,
    quantity_skew,
    split_dataset,
)
from medfed.errors import DatasetError

seeds = st.integers(0, 2**32 - 1)


def assert_partition(parts, n, n_parts, min_size=0):
    """Disjoint, complete, sorted: each of range(n) appears in exactly one part."""
    assert len(parts) == n_parts
    for part in parts:
        assert part.ndim == 1
        assert np.issubdtype(part.dtype, np.integer)
        assert bool(np.all(np.diff(part) > 0))
        assert len(part) >= min_size
    every = np.concatenate([*parts, np.empty(0, np.int64)])
    assert bool(((every >= 0) & (every < n)).all())
    assert np.bincount(every, minlength=n).tolist() == [1] * n


def label_mix(labels, part, n_classes):
    return np.bincount(labels[part], minlength=n_classes) / len(part)


# --- natural -----------------------------------------------------------------------------------


@given(st.lists(st.integers(-3, 3) | st.sampled_from(["a", "b", "cleveland"]), max_size=60))
def test_natural_matches_a_dict_of_lists(groups):
    reference: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        reference.setdefault(g, []).append(i)
    got = natural(groups)
    assert list(got) == list(reference)
    for g, rows in reference.items():
        assert np.issubdtype(got[g].dtype, np.integer)
        assert got[g].tolist() == rows


def test_natural_accepts_a_numpy_column():
    got = natural(np.array(["hungary", "cleveland", "hungary", "va"]))
    assert list(got) == ["hungary", "cleveland", "va"]
    assert [v.tolist() for v in got.values()] == [[0, 2], [1], [3]]


# --- partition properties ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(labels=st.lists(st.integers(0, 4), max_size=150), n_parts=st.integers(1, 8), seed=seeds)
def test_dirichlet_label_skew_is_a_partition(labels, n_parts, seed):
    # min_size=0 is always feasible, so even tiny alpha must return on the first draw.
    y = np.array(labels, dtype=np.int64)
    for alpha in (0.01, 1.0, 100.0):
        parts = dirichlet_label_skew(y, n_parts, alpha, np.random.default_rng(seed), min_size=0)
        assert_partition(parts, len(y), n_parts)


@st.composite
def feasible(draw):
    """n_parts, min_size and a row count of at least 5 * n_parts * min_size."""
    n_parts, min_size = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    return n_parts, min_size, 5 * n_parts * min_size + draw(st.integers(0, 150))


@settings(max_examples=100, deadline=None)
@given(
    case=feasible(),
    classes=st.integers(1, 5),
    alpha=st.floats(0.3, 100.0),
    seed=seeds,
)
def test_dirichlet_label_skew_respects_min_size(case, classes, alpha, seed):
    n_parts, min_size, n = case
    y = np.random.default_rng(seed).integers(0, classes, n)
    try:
        parts = dirichlet_label_skew(y, n_parts, alpha, np.random.default_rng(seed), min_size)
    except DatasetError as exc:  # possible (about 1 case in 300 here), but only after the tries
        assert f"{MAX_TRIES} tries" in str(exc)
        return
    assert_partition(parts, n, n_parts, min_size)


@settings(max_examples=100, deadline=None)
@given(case=feasible(), alpha=st.floats(0.3, 100.0), seed=seeds)
def test_quantity_skew_respects_min_size(case, alpha, seed):
    n_parts, min_size, n = case
    try:
        parts = quantity_skew(n, n_parts, alpha, np.random.default_rng(seed), min_size)
    except DatasetError as exc:
        assert f"{MAX_TRIES} tries" in str(exc)
        return
    assert_partition(parts, n, n_parts, min_size)


@given(n=st.integers(0, 300), n_parts=st.integers(1, 8), seed=seeds)
def test_quantity_skew_is_a_partition(n, n_parts, seed):
    for alpha in (0.01, 1.0, 100.0):
        parts = quantity_skew(n, n_parts, alpha, np.random.default_rng(seed), min_size=0)
        assert_partition(parts, n, n_parts)


@given(n_parts=st.integers(1, 10), extra=st.integers(0, 200), seed=seeds)
def test_iid_is_a_balanced_partition(n_parts, extra, seed):
    n = n_parts + extra
    parts = iid(n, n_parts, np.random.default_rng(seed))
    assert_partition(parts, n, n_parts, min_size=1)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_min_size_is_enforced_by_resampling():
    # 3 classes x 40 rows over 6 parts at alpha 0.3: single draws often leave a part below 5 rows.
    y = np.repeat(np.arange(3), 40)
    for seed in range(20):
        parts = dirichlet_label_skew(y, 6, 0.3, np.random.default_rng(seed), min_size=5)
        assert_partition(parts, len(y), 6, min_size=5)


def test_labels_of_any_kind_are_classes():
    y = np.array(["sick", "well", "well", "sick", "unsure"] * 10)
    parts = dirichlet_label_skew(y, 3, 1.0, np.random.default_rng(0), min_size=2)
    assert_partition(parts, len(y), 3, min_size=2)


def test_improbable_min_size_raises_after_bounded_tries():
    # Two classes cannot reach 10 parts when Dir(0.001) sends nearly each class to one part.
    y = np.repeat([0, 1], 50)
    with pytest.raises(DatasetError, match=r"alpha=0\.001.*100 tries.*raise alpha"):
        dirichlet_label_skew(y, 10, 0.001, np.random.default_rng(0))
    with pytest.raises(DatasetError, match="100 tries"):
        quantity_skew(2000, 10, 0.01, np.random.default_rng(0))


# --- skew strength -----------------------------------------------------------------------------
# 10 balanced classes (200 rows each) over 10 parts. The global mix is 0.1 per class, so under an
# IID split no part is dominated (majority share >= 0.5) and the worst part's total-variation (TV)
# distance from the global mix is ~0.11 on average (hypergeometric noise).
#
# alpha = 0.05: each class's Dir(0.05) shares put most of it in one part. Over 1,000 simulated
# seeds the fraction of dominated parts averaged 0.79 (1st percentile 0.60, min 0.40) and the mean
# TV per split was >= 0.63. We require the 20-seed average of the dominated fraction >= 0.6 (its
# standard error is ~0.02 around 0.79) and a mean TV >= 0.5 for every seed.
#
# alpha = 1000: p ~ Beta(1000, 9000) has sd 0.003, i.e. +-0.6 of a part's 20 rows per class, plus
# <= 1 row of floor rounding. Over 1,000 seeds the worst part's TV never passed 0.027; we require
# < 0.05 for every seed, below what an IID split typically gives (so the test can tell them apart).

SKEW_LABELS = np.repeat(np.arange(10), 200)


def skew_stats(parts):
    mixes = np.array([label_mix(SKEW_LABELS, p, 10) for p in parts])
    tv = 0.5 * np.abs(mixes - 0.1).sum(axis=1)
    return float(np.mean(mixes.max(axis=1) >= 0.5)), tv


def test_small_alpha_gives_parts_dominated_by_one_class():
    dominated, mean_tv = [], []
    for seed in range(20):
        parts = dirichlet_label_skew(SKEW_LABELS, 10, 0.05, np.random.default_rng(seed))
        fraction, tv = skew_stats(parts)
        dominated.append(fraction)
        mean_tv.append(tv.mean())
    assert np.mean(dominated) >= 0.6
    assert min(mean_tv) >= 0.5


def test_large_alpha_gives_the_global_label_mix():
    for seed in range(20):
        parts = dirichlet_label_skew(SKEW_LABELS, 10, 1000.0, np.random.default_rng(seed))
        fraction, tv = skew_stats(parts)
        assert fraction == 0.0
        assert tv.max() < 0.05


def test_an_iid_split_is_not_mistaken_for_large_alpha():
    worst = [skew_stats(iid(2000, 10, np.random.default_rng(s)))[1].max() for s in range(20)]
    assert np.mean(worst) > 0.05


def test_quantity_skew_strength_follows_alpha():
    # Dir(0.3) over 10 parts: the largest part holds 0.43 of the rows on average (min 0.17 in 1,000
    # seeds); IID would give 0.1. Dir(1000): shares have sd 0.003 (3% of n/10), and the worst
    # relative deviation from n/10 never passed 0.125 in 1,000 seeds; we allow 0.2.
    largest = []
    for seed in range(20):
        sizes = np.array(
            [len(p) for p in quantity_skew(2000, 10, 0.3, np.random.default_rng(seed))]
        )
        largest.append(sizes.max() / 2000)
        even = [len(p) for p in quantity_skew(2000, 10, 1000.0, np.random.default_rng(seed))]
        assert np.abs(np.array(even) - 200).max() / 200 < 0.2
    assert np.mean(largest) > 0.3


# --- reproducibility ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: dirichlet_label_skew(SKEW_LABELS, 7, 0.5, rng),
        lambda rng: quantity_skew(2000, 7, 0.5, rng),
        lambda rng: iid(2000, 7, rng),
    ],
    ids=["dirichlet_label_skew", "quantity_skew", "iid"],
)
def test_a_seed_reproduces_the_split(draw):
    first = draw(np.random.default_rng(123))
    again = draw(np.random.default_rng(123))
    other = draw(np.random.default_rng(124))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


# --- split_dataset on the built-in heart data --------------------------------------------------


@pytest.fixture(scope="module")
def cleveland():
    return heart_disease_centres()["cleveland"]


def table(x, y):
    """Rows (features + label) in lexicographic order: a multiset we can compare exactly."""
    rows = np.hstack([x, y[:, None]])
    return rows[np.lexsort(rows.T[::-1])]


def test_split_dataset_rebuilds_every_training_row(cleveland):
    rng = np.random.default_rng(7)
    parts = dirichlet_label_skew(cleveland.y_train, 4, 0.5, rng, min_size=10)
    out = split_dataset(cleveland, parts, 0.25, rng)

    assert sum(d.rows for d in out) == len(cleveland.y_train) == 199
    for part, d in zip(parts, out, strict=True):
        assert d.features == cleveland.features
        assert d.label == cleveland.label
        assert len(d.y_train) >= 1 and len(d.y_test) >= 1
        assert abs(len(d.y_test) - 0.25 * len(part)) <= 1
        got = table(np.vstack([d.x_train, d.x_test]), np.concatenate([d.y_train, d.y_test]))
        assert np.array_equal(got, table(cleveland.x_train[part], cleveland.y_train[part]))
    everything = [np.vstack([d.x_train, d.x_test]) for d in out]
    labels = [np.concatenate([d.y_train, d.y_test]) for d in out]
    assert np.array_equal(
        table(np.vstack(everything), np.concatenate(labels)),
        table(cleveland.x_train, cleveland.y_train),
    )


def test_split_dataset_stratifies_each_part(cleveland):
    y = cleveland.y_train
    parts = iid(len(y), 3, np.random.default_rng(1))
    for d, part in zip(
        split_dataset(cleveland, parts, 0.3, np.random.default_rng(2)), parts, strict=True
    ):
        n_test = len(d.y_test)
        for c in (0.0, 1.0):
            quota = n_test * np.sum(y[part] == c) / len(part)
            assert abs(np.sum(d.y_test == c) - quota) < 1


def test_single_class_part_splits_at_random(cleveland):
    healthy = np.flatnonzero(cleveland.y_train == 0)[:40]
    picks = []
    for seed in (0, 1):
        (d,) = split_dataset(cleveland, [healthy], 0.25, np.random.default_rng(seed))
        assert (len(d.y_train), len(d.y_test)) == (30, 10)
        assert not d.y_test.any()
        picks.append(table(d.x_test, d.y_test))
    assert not np.array_equal(picks[0], picks[1])


def test_split_dataset_is_reproducible(cleveland):
    parts = iid(len(cleveland.y_train), 2, np.random.default_rng(0))
    a = split_dataset(cleveland, parts, 0.3, np.random.default_rng(5))
    b = split_dataset(cleveland, parts, 0.3, np.random.default_rng(5))
    for da, db in zip(a, b, strict=True):
        assert np.array_equal(da.x_test, db.x_test)
        assert np.array_equal(da.y_train, db.y_train)


# --- argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan, math.inf, "1.0", True])
def test_alpha_must_be_finite_and_positive(alpha):
    rng = np.random.default_rng(0)
    with pytest.raises(DatasetError, match="alpha must be a finite number > 0"):
        dirichlet_label_skew(np.zeros(10), 2, alpha, rng)
    with pytest.raises(DatasetError, match="alpha must be a finite number > 0"):
        quantity_skew(10, 2, alpha, rng)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda rng: iid(10, 0, rng), "n_parts must be >= 1"),
        (lambda rng: iid(3, 4, rng), "cannot split 3 rows into 4"),
        (lambda rng: iid(-1, 1, rng), "n must be >= 0"),
        (lambda rng: iid(10, 2.0, rng), "n_parts must be an integer"),
        (lambda rng: quantity_skew(10, 0, 1.0, rng), "n_parts must be >= 1"),
        (lambda rng: quantity_skew(10, 2, 1.0, rng, min_size=-1), "min_size must be >= 0"),
        (lambda rng: quantity_skew(10, 3, 1.0, rng, min_size=4), "10 rows cannot give 3 parts"),
        (lambda rng: dirichlet_label_skew(np.zeros(5), 0, 1.0, rng), "n_parts must be >= 1"),
        (lambda rng: dirichlet_label_skew(np.zeros((5, 2)), 2, 1.0, rng), "one-dimensional"),
        (lambda rng: dirichlet_label_skew(np.zeros(5), 3, 1.0, rng, 2), "5 rows cannot give"),
    ],
)
def test_bad_partition_arguments_are_refused(call, message):
    with pytest.raises(DatasetError, match=message):
        call(np.random.default_rng(0))


@pytest.mark.parametrize(
    ("parts", "fraction", "message"),
    [
        ([], 0.25, "parts is empty"),
        ([np.array([], dtype=np.int64)], 0.25, "part 0 has 0 row"),
        ([np.arange(5), np.array([9])], 0.25, "part 1 has 1 row"),
        ([np.array([0, 199])], 0.25, r"outside 0\.\.198"),
        ([np.array([-1, 3])], 0.25, "outside"),
        ([np.array([3, 3, 4])], 0.25, "more than once"),
        ([np.arange(10), np.arange(5, 15)], 0.25, "parts overlap"),
        ([np.array([0.0, 1.0])], 0.25, "integer row indices"),
        ([np.arange(10).reshape(2, 5)], 0.25, "1-D array"),
        ([np.arange(10)], 0.0, "test_fraction"),
        ([np.arange(10)], 1.0, "test_fraction"),
        ([np.arange(10)], math.nan, "test_fraction"),
    ],
)
def test_bad_split_arguments_are_refused(cleveland, parts, fraction, message):
    with pytest.raises(DatasetError, match=message):
        split_dataset(cleveland, parts, fraction, np.random.default_rng(0))


@pytest.mark.parametrize(("fraction", "sizes"), [(0.01, (2, 1)), (0.99, (1, 2))])
def test_every_part_keeps_a_train_and_a_test_row(cleveland, fraction, sizes):
    (d,) = split_dataset(cleveland, [np.array([0, 1, 2])], fraction, np.random.default_rng(0))
    assert (len(d.y_train), len(d.y_test)) == sizes
