from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfed.errors import StoreError
from medfed.protocol.tensors import Weights, chunk, iter_data, weights_sha256
from medfed.store import ModelStore
from tests.store.test_model_store import assert_same_model, every_dtype_model


def wire_bytes(weights: Weights) -> bytes:
    return b"".join(bytes(v) for v in iter_data(weights))


def test_open_maps_the_stored_model_read_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    weights = every_dtype_model()
    sha = store.put(weights)

    stored = store.open(sha)

    assert stored.sha256 == sha
    assert_same_model(stored.weights, weights)
    assert weights_sha256(stored.weights) == sha
    for name, array in stored.weights.items():
        assert not array.flags.writeable, name
    with pytest.raises(ValueError, match="read-only"):
        stored.weights["scalar"][...] = 0


def test_put_and_open_writes_once_and_maps_what_it_wrote(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    weights = every_dtype_model()

    first = store.put_and_open(weights)
    again = store.put_and_open(every_dtype_model())

    assert first.sha256 == again.sha256 == weights_sha256(weights)
    assert_same_model(first.weights, weights)
    assert_same_model(again.weights, weights)
    assert_same_model(store.get(first.sha256), weights)


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
def test_data_chunks_are_the_wire_bytes_cut_like_the_encoder(tmp_path: Path, size: int) -> None:
    store = ModelStore(tmp_path)
    weights = every_dtype_model()
    stored = store.open(store.put(weights))

    pieces = list(stored.data_chunks(size))

    assert b"".join(pieces) == wire_bytes(weights)
    assert pieces == [bytes(p) for p in chunk(iter_data(weights), size)]


def test_empty_tensors_and_models(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    weights: Weights = {"none": np.zeros((0, 3), np.float32), "w": np.arange(3.0)}
    stored = store.open(store.put(weights))
    assert_same_model(stored.weights, weights)
    assert b"".join(stored.data_chunks(2)) == wire_bytes(weights)
    empty = store.open(store.put({}))
    assert empty.weights == {}
    assert list(empty.data_chunks()) == []


def test_flipped_data_byte_is_detected_on_open(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = store.put({"w": np.arange(16, dtype=np.float32)})
    path = store.path(sha)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(StoreError, match="corrupt"):
        store.open(sha)


def rewrite_header(path: Path, edit: object) -> None:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    edit(header)  # type: ignore[operator]
    text = json.dumps(header).encode()  # offsets count from the data's start: any length works
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length :])


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h["w"].update(data_offsets=[0, 4 * 15]),
        lambda h: h["w"].update(data_offsets=[8, 8 + 4 * 16]),
        lambda h: h["w"].update(shape=[17]),
        lambda h: h["w"].update(dtype="F8_E4M3"),
        lambda h: h["w"].pop("shape"),
        lambda h: h.update(w=[]),
        lambda h: h.pop("__metadata__"),
        lambda h: h["__metadata__"].update(order=json.dumps(["v"])),
    ],
    ids=[
        "short-range",
        "range-past-end",
        "shape-mismatch",
        "unknown-dtype",
        "no-shape",
        "entry-not-object",
        "no-order",
        "wrong-order",
    ],
)
def test_malformed_header_is_a_store_error(tmp_path: Path, edit: object) -> None:
    store = ModelStore(tmp_path)
    sha = store.put({"w": np.arange(16, dtype=np.float32)})
    rewrite_header(store.path(sha), edit)

    with pytest.raises(StoreError):
        store.open(sha)


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"\xff" * 8 + b[8:], lambda b: b"", lambda b: b[:20]],
    ids=["truncated", "bad-header-length", "empty", "inside-header"],
)
def test_unreadable_file_is_a_store_error_on_open(tmp_path: Path, damage: object) -> None:
    store = ModelStore(tmp_path)
    sha = store.put(every_dtype_model())
    path = store.path(sha)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]

    with pytest.raises(StoreError):
        store.open(sha)


def test_missing_model_on_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not in store"):
        ModelStore(tmp_path).open("ab" * 32)
