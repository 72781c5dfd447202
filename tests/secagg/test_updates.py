from __future__ import annotations

import numpy as np
import pytest

from medfed.errors import SecAggError
from medfed.protocol.tensors import Manifest, TensorSpec
from medfed.secagg.quantize import FixedPoint
from medfed.secagg.updates import decode_sum, dimension, encode_update, split_reply


def test_weighted_mean_and_plain_mean_of_extras_come_back_from_the_sum() -> None:
    rng = np.random.default_rng(3)
    global_model = {"w": rng.normal(size=(2, 3)).astype(np.float32), "b": np.zeros(1, np.float32)}
    extras = Manifest((TensorSpec("scaffold/dc/b", "float32", (1,)),
                       TensorSpec("scaffold/dc/w", "float32", (2, 3))))  # fmt: skip
    encoding = FixedPoint(clip=100.0, nodes=3)
    sites = []
    total = np.zeros(dimension(global_model, extras), np.uint32)
    for n in (5, 17, 200):
        local = {k: v + rng.normal(scale=0.1, size=v.shape).astype(np.float32)
                 for k, v in global_model.items()}  # fmt: skip
        dc = {t.name: rng.normal(scale=0.01, size=t.shape) for t in extras.tensors}
        words, clipped = encode_update(global_model, local, n, encoding, rng, dc)
        assert clipped == 0
        total += words
        sites.append((n, local, dc))

    model, means, weight = decode_sum(total, global_model, encoding, len(sites), extras)

    assert weight == 222
    bound = encoding.error_bound
    for k in global_model:
        expected = sum(n * local[k].astype(np.float64) for n, local, _ in sites) / weight
        np.testing.assert_allclose(model[k], expected, atol=bound / weight * 2 + 1e-6)
    for t in extras.tensors:
        expected = sum(dc[t.name] for _, _, dc in sites) / len(sites)
        np.testing.assert_allclose(means[t.name], expected, atol=bound)


def test_split_reply_separates_model_broadcast_state_and_extras() -> None:
    fetched = {"w": np.zeros(2), "scaffold/c/w": np.ones(2)}
    wire = {"w": np.ones(2), "scaffold/dc/w": np.full(2, 0.5)}
    global_model, local, extras = split_reply(fetched, wire)
    assert list(global_model) == list(local) == ["w"]
    assert list(extras) == ["scaffold/dc/w"]


def test_layout_and_weight_are_checked() -> None:
    model = {"w": np.zeros(3, np.float32)}
    encoding = FixedPoint(clip=1.0, nodes=2)
    rng = np.random.default_rng(0)
    with pytest.raises(SecAggError, match="differ"):
        encode_update(model, {"v": np.zeros(3)}, 1, encoding, rng)
    with pytest.raises(SecAggError, match="weight"):
        encode_update(model, model, 0, encoding, rng)
    with pytest.raises(SecAggError, match="length"):
        decode_sum(np.zeros(3, np.uint32), model, encoding)
    with pytest.raises(SecAggError, match="total weight is zero"):
        decode_sum(np.zeros(4, np.uint32), model, encoding)
