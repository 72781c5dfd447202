import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.errors import StrategyError
from medfed.strategies.robust import (
    clip_to_norm,
    coordinate_median,
    flatten,
    global_norm,
    krum,
    krum_scores,
    multi_krum,
    trimmed_mean,
    unflatten,
)

SHAPES = {"conv.weight": (2, 3), "bias": (4,), "scale": ()}


def make_updates(rng, n, loc=0.0, scale=1.0, dtype=np.float32):
    return [
        {
            name: (loc + scale * rng.standard_normal(shape)).astype(dtype)
            for name, shape in SHAPES.items()
        }
        for _ in range(n)
    ]


def stacked(updates, name):
    return np.stack([np.asarray(u[name], dtype=np.float64) for u in updates])


def brute_force_krum_scores(updates, f):
    vectors = [np.concatenate([np.ravel(u[k]).astype(np.float64) for k in SHAPES]) for u in updates]
    n = len(vectors)
    scores = []
    for i in range(n):
        distances = sorted(
            float(np.sum((vectors[i] - vectors[j]) ** 2)) for j in range(n) if j != i
        )
        scores.append(sum(distances[: n - f - 2]))
    return np.array(scores)


def test_flatten_and_unflatten_round_trip_in_key_order():
    update = {"b": np.arange(6, dtype=np.int32).reshape(2, 3), "a": np.float32(7.5)}
    vector = flatten(update)
    assert vector.dtype == np.float64
    np.testing.assert_array_equal(vector, [0, 1, 2, 3, 4, 5, 7.5])
    back = unflatten(vector, update)
    assert list(back) == ["b", "a"]
    assert back["b"].shape == (2, 3) and back["a"].shape == ()
    assert all(a.dtype == np.float64 for a in back.values())
    vector[0] = 99.0
    assert back["b"][0, 0] == 0.0


def test_unflatten_rejects_a_vector_of_the_wrong_size():
    with pytest.raises(StrategyError, match="unflatten"):
        unflatten(np.zeros(3), {"w": np.zeros(4)})


def test_global_norm_matches_numpy_and_survives_huge_values():
    rng = np.random.default_rng(0)
    update = make_updates(rng, 1)[0]
    expected = math.sqrt(
        sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in update.values())
    )
    assert global_norm(update) == pytest.approx(expected, rel=1e-12)
    assert global_norm({"w": np.array([3e200, 4e200])}) == pytest.approx(5e200, rel=1e-12)
    assert global_norm({"w": np.zeros(3)}) == 0.0


def test_median_and_trimmed_mean_match_numpy_references():
    rng = np.random.default_rng(1)
    updates = make_updates(rng, 7)
    median = coordinate_median(updates)
    trimmed = trimmed_mean(updates, trim=2)
    for name in SHAPES:
        stack = stacked(updates, name)
        np.testing.assert_array_equal(median[name], np.median(stack, axis=0))
        reference = np.sort(stack, axis=0)[2:5].mean(axis=0)
        np.testing.assert_allclose(trimmed[name], reference, rtol=1e-12, atol=0)
        assert median[name].dtype == trimmed[name].dtype == np.float64


def test_trimmed_mean_with_zero_trim_is_the_plain_mean():
    rng = np.random.default_rng(2)
    updates = make_updates(rng, 4)
    out = trimmed_mean(updates, trim=0)
    for name in SHAPES:
        np.testing.assert_allclose(out[name], stacked(updates, name).mean(axis=0), rtol=1e-12)


@st.composite
def attacked_rounds(draw):
    f = draw(st.integers(0, 3))
    honest_count = draw(st.integers(f + 1, f + 4))
    size = draw(st.integers(1, 6))
    honest = [
        draw(hnp.arrays(np.float64, size, elements=st.floats(-1e3, 1e3)))
        for _ in range(honest_count)
    ]
    huge = st.sampled_from([1e6, -1e6, 1e300, -1e300]) | st.floats(-1e6, 1e6)
    attackers = [draw(hnp.arrays(np.float64, size, elements=huge)) for _ in range(f)]
    order = draw(st.permutations(range(honest_count + f)))
    pool = honest + attackers
    return f, np.stack(honest), [{"w": pool[i]} for i in order]


@settings(max_examples=150, deadline=None)
@given(attacked_rounds())
def test_median_and_trimmed_mean_stay_within_the_honest_range(case):
    f, honest, updates = case
    low, high = honest.min(axis=0), honest.max(axis=0)
    for result in (coordinate_median(updates)["w"], trimmed_mean(updates, trim=f)["w"]):
        assert np.all(low <= result) and np.all(result <= high)


def test_trimmed_mean_is_never_outside_the_kept_values_by_rounding():
    updates = [{"w": np.array([0.1])} for _ in range(3)]
    assert np.mean([0.1, 0.1, 0.1]) > 0.1  # the rounding the clamp guards against
    assert trimmed_mean(updates, trim=0)["w"][0] == 0.1


def test_krum_scores_match_brute_force_pairwise_distances():
    rng = np.random.default_rng(3)
    updates = make_updates(rng, 8)
    for f in (0, 1, 2):
        np.testing.assert_allclose(
            krum_scores(updates, f), brute_force_krum_scores(updates, f), rtol=1e-12
        )


def test_multi_krum_averages_the_lowest_scores():
    rng = np.random.default_rng(4)
    updates = make_updates(rng, 9)
    f, m = 2, 4
    expected = [int(i) for i in np.argsort(brute_force_krum_scores(updates, f), kind="stable")[:m]]
    mean, selected = multi_krum(updates, f, m)
    assert selected == expected
    for name in SHAPES:
        reference = stacked([updates[i] for i in expected], name).mean(axis=0)
        np.testing.assert_allclose(mean[name], reference, rtol=1e-12)


def test_krum_ties_go_to_the_lowest_index():
    updates = [{"w": np.ones(3)} for _ in range(5)]
    assert krum(updates, 1)[1] == [0]
    assert multi_krum(updates, 1, 3)[1] == [0, 1, 2]
    many = [{"w": np.full(3, float(i % 5 == 0))} for i in range(120)]
    expected = [i for i in range(120) if i % 5 != 0][:50]
    assert multi_krum(many, 5, 50)[1] == expected


@pytest.mark.parametrize("f", [1, 2, 3])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("colluding", [False, True])
def test_krum_picks_an_honest_update(f, seed, colluding):
    rng = np.random.default_rng(seed)
    n = 2 * f + 3 + seed % 2
    honest = [{"w": rng.normal(0.0, 0.1, 10)} for _ in range(n - f)]
    if colluding:
        attackers = [{"w": np.full(10, 50.0)} for _ in range(f)]
    else:
        attackers = [{"w": rng.normal(0.0, 0.1, 10) + rng.choice([-50, 50], 10)} for _ in range(f)]
    order = rng.permutation(n)
    updates = [(honest + attackers)[i] for i in order]
    honest_positions = {int(p) for p, i in enumerate(order) if i < n - f}
    chosen, (index,) = krum(updates, f)
    assert index in honest_positions
    np.testing.assert_array_equal(chosen["w"], updates[index]["w"])
    _, selected = multi_krum(updates, f, n - f)
    assert set(selected) == honest_positions


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(0, 20), elements=st.floats(-1e6, 1e6)),
    st.floats(1e-6, 1e6),
)
def test_clip_bounds_the_norm_and_keeps_direction(values, max_norm):
    clipped, scale = clip_to_norm({"w": values}, max_norm)
    norm = float(np.sqrt(np.sum(values**2)))
    assert np.linalg.norm(clipped["w"]) <= max_norm + 1e-9
    assert 0 < scale <= 1
    expected_scale = 1.0 if norm <= max_norm else max_norm / norm
    assert scale == pytest.approx(expected_scale, rel=1e-12)
    np.testing.assert_allclose(clipped["w"], values * expected_scale, rtol=1e-12)


def test_clip_leaves_a_zero_update_unchanged():
    with np.errstate(all="raise"):
        clipped, scale = clip_to_norm({"w": np.zeros((2, 2), np.float32), "b": np.float32(0)}, 1.0)
    assert scale == 1.0
    assert not np.any(clipped["w"]) and clipped["b"] == 0 and clipped["w"].dtype == np.float64


@pytest.mark.parametrize("max_norm", [0, -1.0, math.inf, math.nan, True, "1"])
def test_clip_rejects_a_bad_max_norm(max_norm):
    with pytest.raises(StrategyError, match="max_norm"):
        clip_to_norm({"w": np.ones(2)}, max_norm)


def test_bad_inputs_raise_strategy_errors():
    good = {"w": np.zeros(2), "b": np.zeros(())}
    for call in (coordinate_median, lambda u: trimmed_mean(u, 0), lambda u: krum_scores(u, 0)):
        with pytest.raises(StrategyError, match="zero updates"):
            call([])
        with pytest.raises(StrategyError, match="layout"):
            call([good, {"w": np.zeros(2)}] * 2)
        with pytest.raises(StrategyError, match="shape"):
            call([good, {"w": np.zeros(3), "b": np.zeros(())}] * 2)
        with pytest.raises(StrategyError, match="NaN or infinity"):
            call([good, {"w": np.array([0.0, np.nan]), "b": np.zeros(())}] * 2)
        with pytest.raises(StrategyError, match="non-numeric"):
            call([{"w": np.array(["a", "b"]), "b": np.zeros(())}] * 4)
        with pytest.raises(StrategyError, match="sequence"):
            call(good)


def test_bad_parameters_raise_strategy_errors():
    updates = [{"w": np.full(2, float(i))} for i in range(6)]
    with pytest.raises(StrategyError, match="n > 2\\*trim"):
        trimmed_mean(updates, trim=3)
    with pytest.raises(StrategyError, match="trim"):
        trimmed_mean(updates, trim=-1)
    with pytest.raises(StrategyError, match="2f\\+2"):
        krum_scores(updates, f=2)
    with pytest.raises(StrategyError, match="f must be an integer"):
        krum(updates, f=True)
    with pytest.raises(StrategyError, match="m <= n - f"):
        multi_krum(updates, f=1, m=6)
    with pytest.raises(StrategyError, match="m <= n - f"):
        multi_krum(updates, f=1, m=0)


def test_overflowing_results_raise():
    updates = [{"w": np.array([1.5e308])}, {"w": np.array([1.7e308])}]
    with pytest.raises(StrategyError, match="overflowed"):
        coordinate_median(updates)
    with pytest.raises(StrategyError, match="overflowed"):
        trimmed_mean(updates, 0)
