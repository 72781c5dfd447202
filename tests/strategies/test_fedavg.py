import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import medfed.strategies.fedavg as fedavg_module
from medfed.errors import StrategyError
from medfed.protocol.tensors import manifest_of
from medfed.strategies.base import Reply
from medfed.strategies.fedavg import FedAvg, WeightedSum, weighted_average


@st.composite
def rounds(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(
        st.lists(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), min_size=1, max_size=3)
    )
    n = draw(st.integers(1, 5))
    elements = st.floats(-1e3, 1e3, width=32)
    updates = [
        {
            f"t{i}": draw(hnp.arrays(dtype, shape, elements=elements))
            for i, shape in enumerate(shapes)
        }
        for _ in range(n)
    ]
    weights = draw(st.lists(st.floats(1e-3, 1e4), min_size=n, max_size=n))
    return updates, weights


def reference(updates, weights):
    return {
        name: np.average(np.stack([u[name] for u in updates]), axis=0, weights=weights)
        for name in updates[0]
    }


def tolerance(dtype):
    return {"rtol": 1e-6, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-9}


@settings(max_examples=80, deadline=None)
@given(rounds())
def test_streaming_and_reference_match_numpy_average(case):
    updates, weights = case
    acc = WeightedSum(manifest_of(updates[0]))
    for update, weight in zip(updates, weights, strict=True):
        acc.add(update, weight)
    streamed = acc.mean()
    in_memory = weighted_average(list(zip(updates, weights, strict=True)))
    expected = reference(updates, weights)
    assert acc.count == len(updates)
    assert acc.total_weight == pytest.approx(sum(weights))
    for name, want in expected.items():
        dtype = updates[0][name].dtype
        for got in (streamed[name], in_memory[name]):
            assert got.dtype == dtype
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, **tolerance(dtype))


@settings(max_examples=80, deadline=None)
@given(rounds())
def test_streaming_float64_fold_is_bit_identical_to_numpy_average(case):
    # Both add weight * update row by row in float64 and divide once by the summed weights, so
    # with the replies in the same order (n <= 7 keeps numpy's reduction sequential) the streamed
    # mean equals np.average over the float64 stack exactly, before and after the cast back.
    updates, weights = case
    acc = WeightedSum(manifest_of(updates[0]))
    for update, weight in zip(updates, weights, strict=True):
        acc.add(update, weight)
    streamed = acc.mean()
    for name, want in reference(updates, weights).items():
        assert want.dtype == np.float64
        np.testing.assert_array_equal(streamed[name], want.astype(updates[0][name].dtype))


def test_blockwise_add_is_bit_identical_to_one_block(monkeypatch):
    rng = np.random.default_rng(0)
    updates = [
        {"a": rng.normal(size=(37, 3)).astype(np.float32), "b": rng.normal(size=5)}
        for _ in range(3)
    ]
    weights = [3.0, 1.5, 7.0]

    def run():
        acc = WeightedSum(manifest_of(updates[0]))
        for u, w in zip(updates, weights, strict=True):
            acc.add(u, w)
        return acc.mean()

    whole = run()
    monkeypatch.setattr(fedavg_module, "BLOCK_ELEMENTS", 7)
    blocks = run()
    for name in whole:
        np.testing.assert_array_equal(whole[name], blocks[name])
    np.testing.assert_allclose(blocks["a"], reference(updates, weights)["a"], rtol=1e-6)


def test_memmapped_updates(tmp_path):
    rng = np.random.default_rng(1)
    arrays = []
    for i in range(3):
        mm = np.memmap(tmp_path / f"u{i}.bin", dtype=np.float32, mode="w+", shape=(1000,))
        mm[:] = rng.normal(size=1000)
        mm.flush()
        arrays.append(np.memmap(tmp_path / f"u{i}.bin", dtype=np.float32, mode="r", shape=(1000,)))
    acc = WeightedSum(manifest_of({"w": arrays[0]}))
    for a, n in zip(arrays, [10, 20, 30], strict=True):
        acc.add({"w": a}, n)
    np.testing.assert_allclose(
        acc.mean()["w"], np.average(np.stack(arrays), axis=0, weights=[10, 20, 30]), rtol=1e-6
    )


@pytest.mark.parametrize("weight", [0, -1.0, math.nan, math.inf, True, "3"])
def test_bad_weights_are_refused_and_nothing_is_added(weight):
    update = {"w": np.ones(3, np.float32)}
    acc = WeightedSum(manifest_of(update))
    with pytest.raises(StrategyError, match="weight"):
        acc.add(update, weight)
    assert acc.count == 0
    assert acc.total_weight == 0.0
    with pytest.raises(StrategyError):
        weighted_average([(update, weight)])


@pytest.mark.parametrize(
    "update",
    [
        {"w": np.ones(4, np.float32)},
        {"w": np.ones(3, np.float64)},
        {"v": np.ones(3, np.float32)},
        {"w": np.ones(3, np.float32), "extra": np.ones(1, np.float32)},
    ],
)
def test_wrong_layout_is_refused(update):
    acc = WeightedSum(manifest_of({"w": np.ones(3, np.float32)}))
    with pytest.raises(StrategyError, match="layout"):
        acc.add(update, 1.0)
    assert acc.count == 0


def test_mean_of_nothing_is_an_error():
    with pytest.raises(StrategyError, match="no updates"):
        WeightedSum(manifest_of({"w": np.ones(3, np.float32)})).mean()
    with pytest.raises(StrategyError):
        weighted_average([])


def test_integer_tensors_are_rounded():
    acc = WeightedSum(manifest_of({"n": np.array([0], np.int64)}))
    acc.add({"n": np.array([1], np.int64)}, 1.0)
    acc.add({"n": np.array([2], np.int64)}, 2.0)
    out = acc.mean()["n"]
    assert out.dtype == np.int64
    assert out.tolist() == [round(5 / 3)]


def test_bool_tensors_cannot_be_averaged():
    with pytest.raises(StrategyError, match="cannot average"):
        WeightedSum(manifest_of({"mask": np.ones(2, bool)}))


def test_mean_can_be_taken_twice():
    acc = WeightedSum(manifest_of({"w": np.ones(2, np.float32)}))
    acc.add({"w": np.array([1.0, 3.0], np.float32)}, 2.0)
    np.testing.assert_array_equal(acc.mean()["w"], acc.mean()["w"])


def test_non_finite_average_is_refused():
    acc = WeightedSum(manifest_of({"w": np.ones(1, np.float32)}))
    acc.add({"w": np.array([np.inf], np.float32)}, 1.0)
    with pytest.raises(StrategyError, match="not finite"):
        acc.mean()


def test_fedavg_round():
    strategy = FedAvg()
    previous = {"w": np.zeros(2, np.float32)}
    assert strategy.configure_train(1) == {}
    acc = strategy.start_round(previous, {})
    acc.add(Reply("a", {"w": np.array([1, 1], np.float32)}, 1))
    acc.add(Reply("b", {"w": np.array([4, 7], np.float32)}, 2))
    model, state = strategy.aggregate(1, acc, previous, {})
    np.testing.assert_allclose(model["w"], [3, 5])
    assert state == {}
    with pytest.raises(StrategyError, match="layout"):
        strategy.aggregate(1, acc, {"w": np.zeros(3, np.float32)}, {})
