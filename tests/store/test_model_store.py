from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from medfed.errors import StoreError
from medfed.protocol.tensors import (
    SUPPORTED_DTYPES,
    Weights,
    iter_data,
    manifest_of,
    weights_sha256,
)
from medfed.store import ModelStore
from medfed.store import models as models_module


def random_array(
    rng: np.random.Generator, dtype: str, shape: tuple[int, ...]
) -> npt.NDArray[np.generic]:
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def every_dtype_model(seed: int = 0) -> Weights:
    """One tensor per supported dtype, names deliberately out of sorted order, plus a 0-d
    tensor, a transposed (non-contiguous) view and a big-endian array."""
    rng = np.random.default_rng(seed)
    weights: Weights = {}
    for i, dtype in enumerate(SUPPORTED_DTYPES):
        weights[f"{len(SUPPORTED_DTYPES) - i:02d}.{dtype}"] = random_array(rng, dtype, (3, i + 1))
    weights["scalar"] = np.array(2.5, dtype=np.float32)
    weights["a.transposed"] = random_array(rng, "float32", (4, 5)).T
    weights["big.endian"] = random_array(rng, "float64", (2, 3)).astype(">f8")
    return weights


def assert_same_model(got: Weights, expected: Weights) -> None:
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype.newbyteorder("<"), name
        assert got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_then_get_keeps_order_dtypes_and_values(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    weights = every_dtype_model()

    sha = store.put(weights)

    assert sha == weights_sha256(weights)
    assert store.has(sha)
    assert store.path(sha) == tmp_path / sha[:2] / f"{sha}.safetensors"
    assert_same_model(store.get(sha), weights)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1),
            st.sampled_from(SUPPORTED_DTYPES),
            st.lists(st.integers(1, 4), max_size=3).map(tuple),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda t: t[0],
    ),
    st.integers(0, 2**32 - 1),
)
def test_any_model_round_trips(specs: list[tuple[str, str, tuple[int, ...]]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    weights: Weights = {name: random_array(rng, dtype, shape) for name, dtype, shape in specs}
    if "__metadata__" in weights:
        return
    with tempfile.TemporaryDirectory() as root:
        store = ModelStore(Path(root))
        assert_same_model(store.get(store.put(weights)), weights)


def test_put_is_idempotent_and_does_not_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    weights = every_dtype_model()
    sha = store.put(weights)
    stat = store.path(sha).stat()

    def must_not_write(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an existing model was written again")

    monkeypatch.setattr(models_module, "save_file", must_not_write)

    assert store.put(every_dtype_model()) == sha
    assert store.path(sha).stat().st_ino == stat.st_ino
    assert files_under(tmp_path) == [store.path(sha)]


def test_no_temp_files_left_after_puts(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    shas = {store.put(every_dtype_model(seed)) for seed in range(4)}

    assert files_under(tmp_path) == sorted(store.path(s) for s in shas)


def test_failed_write_leaves_neither_model_nor_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    weights = every_dtype_model()

    def half_written(_tensors: object, filename: str, **_kwargs: object) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(models_module, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        store.put(weights)

    assert not store.has(weights_sha256(weights))
    assert files_under(tmp_path) == []


def test_flipped_data_byte_is_detected(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = store.put({"w": np.arange(16, dtype=np.float32)})
    path = store.path(sha)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(StoreError, match="corrupt"):
        store.get(sha)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b"\xff" * 8 + b[8:],
        lambda b: b"",
    ],
    ids=["truncated", "bad-header-length", "empty"],
)
def test_unreadable_file_is_a_store_error(tmp_path: Path, damage: object) -> None:
    store = ModelStore(tmp_path)
    sha = store.put(every_dtype_model())
    path = store.path(sha)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]

    with pytest.raises(StoreError):
        store.get(sha)


def test_file_under_another_models_name_is_detected(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha_a = store.put({"w": np.zeros(3, dtype=np.float32)})
    sha_b = store.put({"w": np.ones(3, dtype=np.float32)})
    store.path(sha_b).write_bytes(store.path(sha_a).read_bytes())

    with pytest.raises(StoreError, match="corrupt"):
        store.get(sha_b)


def test_missing_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = "ab" * 32
    assert not store.has(sha)
    with pytest.raises(StoreError, match=f"model {sha} not in store"):
        store.get(sha)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../" + "a" * 61,
        "A" * 64,
        "a" * 63,
        "a" * 65,
        "g" * 64,
        "/" + "a" * 63,
        "a" * 63 + "\n",
    ],
)
def test_bad_model_id_refused_before_any_path(tmp_path: Path, bad: str) -> None:
    store = ModelStore(tmp_path / "store")
    for call in (store.get, store.has, store.path):
        with pytest.raises(StoreError, match="not a model id"):
            call(bad)
    with pytest.raises(StoreError, match="not a model id"):
        store.put_raw(manifest_of({}), tmp_path / "raw", bad)
    assert not (tmp_path / "store").exists()


def test_reserved_and_unsupported_tensors_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(StoreError, match="reserved"):
        store.put({"__metadata__": np.zeros(2, dtype=np.float32)})
    with pytest.raises(StoreError, match="not supported"):
        store.put({"w": np.zeros(2, dtype=np.complex64)})
    assert files_under(tmp_path) == []


def write_raw(path: Path, weights: Weights) -> Path:
    with path.open("wb") as f:
        for view in iter_data(weights):
            f.write(view)
    return path


def test_put_raw_stores_wire_bytes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    weights = every_dtype_model()
    raw = write_raw(tmp_path / "upload.bin", weights)

    sha = store.put_raw(manifest_of(weights), raw, weights_sha256(weights))

    assert sha == weights_sha256(weights)
    assert_same_model(store.get(sha), weights)


def test_put_raw_refuses_bytes_that_do_not_match_the_hash(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    weights = every_dtype_model()
    raw = write_raw(tmp_path / "upload.bin", weights)
    claimed = weights_sha256(every_dtype_model(seed=1))

    with pytest.raises(StoreError, match="hashes to"):
        store.put_raw(manifest_of(weights), raw, claimed)
    assert not store.has(claimed)


def test_put_raw_refuses_wrong_size(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    weights = every_dtype_model()
    raw = write_raw(tmp_path / "upload.bin", weights)
    with raw.open("ab") as f:
        f.write(b"\x00")

    with pytest.raises(StoreError, match="manifest says"):
        store.put_raw(manifest_of(weights), raw, weights_sha256(weights))


def test_file_with_foreign_dtype_is_a_store_error(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = store.put({"w": np.zeros(3, dtype=np.float32)})
    save_file(
        {"w": np.zeros(3, dtype=np.complex64)},
        str(store.path(sha)),
        metadata={"order": '["w"]', "sha256": sha},
    )

    with pytest.raises(StoreError, match="unreadable"):
        store.get(sha)
