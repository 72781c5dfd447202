from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from medfed.coordinator.models import ServedModels
from medfed.errors import StoreError
from medfed.protocol import streams
from medfed.protocol.tensors import weights_sha256
from medfed.store import ModelStore


def big_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.normal(size=(700, 1000)).astype(np.float32),  # 2.8 MB: several chunks
        "b": np.arange(7, dtype=np.float64),
    }


def owner(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_served_frames_are_the_model_and_get_maps_the_store_file(tmp_path: Path) -> None:
    served = ServedModels(ModelStore(tmp_path))
    weights = big_model()

    sha = served.put(weights)
    received = streams.receive_model(served.frames(sha), sha)
    kept = served.get(sha)

    assert sha == weights_sha256(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(received[name], array)
        np.testing.assert_array_equal(kept[name], array)
        assert not kept[name].flags.writeable
        # a view of the store file's map, not a private copy of the caller's arrays
        assert not np.shares_memory(kept[name], array)
        assert isinstance(owner(kept[name]), mmap.mmap)


def test_a_model_opened_from_the_store_is_served_after_eviction(tmp_path: Path) -> None:
    served = ServedModels(ModelStore(tmp_path), capacity=1)
    first, second = big_model(), {"v": np.ones(3, np.float32)}
    sha = served.put(first)
    served.put(second)  # evicts the first

    received = streams.receive_model(served.frames(sha), sha)

    np.testing.assert_array_equal(received["w"], first["w"])


def test_an_unknown_model_fails_before_any_frame(tmp_path: Path) -> None:
    served = ServedModels(ModelStore(tmp_path))
    with pytest.raises(StoreError, match="not in store"):
        served.frames("ab" * 32)
