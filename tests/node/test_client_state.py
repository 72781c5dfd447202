import json

import numpy as np
import pytest

from medfed.errors import StoreError
from medfed.node.client_state import FileClientState


def tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "z.last": rng.normal(size=(2, 3)).astype(np.float32),
        "a.first": rng.normal(size=4),
        "bn.num_batches_tracked": np.array(7, np.int64),
        "mask": np.array([True, False]),
    }


def assert_same(got, want):
    assert got is not None
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)


def test_save_then_load_keeps_order_dtypes_and_values(tmp_path):
    state = FileClientState(tmp_path, "study-1")
    state.save("scaffold", tensors())
    assert_same(state.load("scaffold"), tensors())


def test_state_survives_a_restart(tmp_path):
    FileClientState(tmp_path, "study-1").save("fedbn", tensors(1))
    assert_same(FileClientState(tmp_path, "study-1").load("fedbn"), tensors(1))


def test_a_missing_key_loads_as_none(tmp_path):
    state = FileClientState(tmp_path, "study-1")
    assert state.load("residual") is None
    state.save("scaffold", tensors())
    assert state.load("residual") is None


def test_saving_again_replaces_the_key_and_keeps_the_others(tmp_path):
    state = FileClientState(tmp_path, "study-1")
    state.save("scaffold", tensors(0))
    state.save("residual", tensors(1))
    state.save("scaffold", tensors(2))
    assert_same(state.load("scaffold"), tensors(2))
    assert_same(state.load("residual"), tensors(1))


def test_empty_weights_round_trip(tmp_path):
    state = FileClientState(tmp_path, "study-1")
    state.save("fedbn", {})  # FedBN on a model without BatchNorm layers saves nothing
    assert state.load("fedbn") == {}


def test_loaded_arrays_are_the_callers_own(tmp_path):
    state = FileClientState(tmp_path, "study-1")
    state.save("scaffold", tensors())
    first = state.load("scaffold")
    first["z.last"][...] = 99
    assert_same(state.load("scaffold"), tensors())


@pytest.mark.parametrize("study_id", ["", "../escape", "a/b", "a\\b", "x" * 129, "sp ace", "é"])
def test_an_unsafe_study_id_is_refused(tmp_path, study_id):
    with pytest.raises(StoreError, match="study id"):
        FileClientState(tmp_path, study_id)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"a string"'])
def test_a_corrupt_index_is_a_store_error(tmp_path, text):
    state = FileClientState(tmp_path, "study-1")
    state.save("scaffold", tensors())
    (tmp_path / "study-1" / "index.json").write_text(text)
    with pytest.raises(StoreError):
        state.load("scaffold")
    with pytest.raises(StoreError):
        state.save("residual", tensors())


def test_an_index_pointing_nowhere_is_a_store_error(tmp_path):
    state = FileClientState(tmp_path, "study-1")
    state.save("scaffold", tensors())
    index = tmp_path / "study-1" / "index.json"
    index.write_text(json.dumps({"scaffold": "../../etc/passwd", "fedbn": "0" * 64}))
    for key in ("scaffold", "fedbn"):
        with pytest.raises(StoreError):
            state.load(key)


def test_two_studies_are_isolated(tmp_path):
    first = FileClientState(tmp_path, "study-1")
    second = FileClientState(tmp_path, "study-2")
    first.save("scaffold", tensors(0))
    assert second.load("scaffold") is None
    second.save("scaffold", tensors(1))
    assert_same(first.load("scaffold"), tensors(0))
    assert_same(second.load("scaffold"), tensors(1))


@pytest.mark.parametrize("study_id", ["..", ".", "study\n"])
def test_a_study_id_that_is_not_a_plain_folder_name_is_refused(tmp_path, study_id):
    with pytest.raises(StoreError, match="study id"):
        FileClientState(tmp_path / "root", study_id)
