import hashlib
import json

import pytest

from medfed.data.registry import DatasetRegistry
from medfed.errors import DatasetError, StoreError

CSV = "age,chol,target,split\n50,200,1,train\n60,180,0,train\n70,220,1,test\n40,190,0,test\n"


@pytest.fixture
def site_csv(tmp_path):
    path = tmp_path / "data" / "site.csv"
    path.parent.mkdir()
    path.write_text(CSV)
    return path


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def test_add_pins_hash_and_schema(state, site_csv):
    entry = DatasetRegistry(state).add(
        "heart", site_csv, label="target", split_column="split", now=1234.5
    )
    assert entry.sha256 == hashlib.sha256(site_csv.read_bytes()).hexdigest()
    assert entry.features == ("age", "chol")
    assert entry.rows == 4
    assert entry.path == site_csv.resolve()
    assert entry.added_unix == 1234.5
    reopened = DatasetRegistry(state)
    assert reopened.get("heart") == entry
    assert reopened.list() == [entry]
    assert reopened.load("heart").x_train.shape == (2, 2)


def test_list_is_sorted_and_remove_forgets(state, site_csv):
    registry = DatasetRegistry(state)
    for name in ("zeta", "alpha"):
        registry.add(name, site_csv, label="target", split_column="split", now=0.0)
    assert [e.name for e in registry.list()] == ["alpha", "zeta"]
    registry.remove("zeta")
    assert [e.name for e in DatasetRegistry(state).list()] == ["alpha"]
    with pytest.raises(DatasetError, match="no dataset named 'zeta'; registered: alpha"):
        registry.remove("zeta")


def test_unknown_name_lists_registered(state, site_csv):
    registry = DatasetRegistry(state)
    with pytest.raises(DatasetError, match="registered: none"):
        registry.get("heart")
    registry.add("heart", site_csv, label="target", split_column="split", now=0.0)
    with pytest.raises(DatasetError, match="no dataset named 'lung'; registered: heart"):
        registry.load("lung")


@pytest.mark.parametrize("name", ["", "Heart", "-x", "a b", "x" * 64, "a/b", "é"])
def test_bad_names_are_refused(state, site_csv, name):
    with pytest.raises(DatasetError, match="must match"):
        DatasetRegistry(state).add(name, site_csv, label="target", now=0.0)


def test_duplicate_name_is_refused(state, site_csv):
    registry = DatasetRegistry(state)
    registry.add("heart", site_csv, label="target", split_column="split", now=0.0)
    with pytest.raises(DatasetError, match="already registered"):
        registry.add("heart", site_csv, label="target", split_column="split", now=1.0)


def test_invalid_file_is_not_registered(state, site_csv):
    site_csv.write_text(CSV.replace("180", "?"))
    registry = DatasetRegistry(state)
    with pytest.raises(DatasetError, match="row 3, column 'chol'"):
        registry.add("heart", site_csv, label="target", split_column="split", now=0.0)
    assert registry.list() == []


def test_changed_file_is_refused_until_re_registered(state, site_csv):
    registry = DatasetRegistry(state)
    registry.add("heart", site_csv, label="target", split_column="split", now=0.0)
    site_csv.write_text(CSV.replace("50,200,1", "50,201,1"))
    with pytest.raises(
        DatasetError, match=r"changed since it was registered.*medfed node dataset add"
    ):
        registry.load("heart")


def test_deleted_file_is_a_dataset_error(state, site_csv):
    registry = DatasetRegistry(state)
    registry.add("heart", site_csv, label="target", split_column="split", now=0.0)
    site_csv.unlink()
    with pytest.raises(DatasetError, match="cannot read"):
        registry.load("heart")


def test_writes_leave_only_the_registry_file(state, site_csv):
    DatasetRegistry(state).add("heart", site_csv, label="target", split_column="split", now=0.0)
    assert [p.name for p in state.iterdir()] == ["datasets.json"]
    assert json.loads((state / "datasets.json").read_text())["version"] == 1


@pytest.mark.parametrize("content", ["{not json", '{"version": 99, "datasets": []}', "[]"])
def test_corrupt_registry_is_a_store_error(state, content):
    state.mkdir()
    (state / "datasets.json").write_text(content)
    with pytest.raises(StoreError):
        DatasetRegistry(state).list()


def test_sizes_are_the_split_row_counts(state, site_csv):
    registry = DatasetRegistry(state)
    entry = registry.add("heart", site_csv, label="target", split_column="split", now=1.0)

    assert (entry.train_rows, entry.test_rows) == (2, 2)
    assert [(s.name, s.train_rows, s.test_rows) for s in registry.sizes()] == [("heart", 2, 2)]


def test_sizes_of_an_entry_registered_before_they_were_recorded(state, site_csv):
    DatasetRegistry(state).add("heart", site_csv, label="target", split_column="split", now=1.0)
    path = state / "datasets.json"
    doc = json.loads(path.read_text())
    for entry in doc["datasets"]:
        del entry["train_rows"], entry["test_rows"]
    path.write_text(json.dumps(doc))

    registry = DatasetRegistry(state)
    assert [(s.train_rows, s.test_rows) for s in registry.sizes()] == [(2, 2)]
    site_csv.write_text(CSV + "1,1,1,train\n")  # changed since registration: no rows offered
    assert [(s.train_rows, s.test_rows) for s in DatasetRegistry(state).sizes()] == [(0, 0)]
