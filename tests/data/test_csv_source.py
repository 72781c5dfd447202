import math

import numpy as np
import pytest

from medfed.data.csv_source import load_csv, parse_csv
from medfed.errors import DatasetError

GOOD = "age,chol,target,split\n50,200,1,train\n60,180.5,0,train\n70,220,1,test\n40,190,0,test\n"


def write(tmp_path, text, name="site.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_declared_split(tmp_path):
    data = load_csv(write(tmp_path, GOOD), features=None, label="target", split_column="split")
    assert data.features == ("age", "chol")
    np.testing.assert_array_equal(data.x_train, [[50, 200], [60, 180.5]])
    np.testing.assert_array_equal(data.y_train, [1, 0])
    np.testing.assert_array_equal(data.x_test, [[70, 220], [40, 190]])
    assert data.x_train.dtype == np.float32


def test_declared_features_pick_and_order_columns(tmp_path):
    data = load_csv(
        write(tmp_path, GOOD), features=["chol", "age"], label="target", split_column="split"
    )
    assert data.features == ("chol", "age")
    np.testing.assert_array_equal(data.x_train[0], [200, 50])


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    data = load_csv(path, features=None, label="target", split_column="split")
    assert data.features == ("age", "chol")


@pytest.mark.parametrize(
    ("text", "features", "expected"),
    [
        (GOOD, ["age", "bmi"], r"row 1: missing columns \['bmi'\]"),
        (GOOD.replace("180.5", "high"), None, r"row 3, column 'chol': 'high' is not a number"),
        (GOOD.replace("180.5", ""), None, r"row 3, column 'chol': empty cell"),
        (GOOD.replace("220,1", "220,2"), None, r"row 4, column 'target': label '2' is not 0 or 1"),
        (GOOD.replace("0,test", "0,valid"), None, r"row 5, column 'split': 'valid' is not one of"),
        (GOOD.replace("180.5", "nan"), None, r"row 3, column 'chol': 'nan' is not a finite"),
        (GOOD.replace("180.5", "1e39"), None, r"row 3, column 'chol': '1e39' is not a finite"),
        (GOOD.replace("60,180.5,0", "60,0"), None, r"row 3: 3 cells, the header has 4"),
        (GOOD.replace("age,chol", "age,age"), None, r"row 1: column names repeated"),
        (GOOD.replace("test", "train"), None, r"the test split is empty"),
        ("", None, r"the file is empty"),
        ("age,target,split\n", None, r"no data rows"),
    ],
)
def test_schema_violations_name_file_row_and_column(tmp_path, text, features, expected):
    path = write(tmp_path, text)
    with pytest.raises(DatasetError, match=expected) as info:
        load_csv(path, features=features, label="target", split_column="split")
    assert str(path) in str(info.value)


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        load_csv(tmp_path / "absent.csv", features=None, label="target")


def test_non_utf8_is_refused():
    with pytest.raises(DatasetError, match="not UTF-8"):
        parse_csv(b"a,target\n\xff,1\n", source="x.csv", features=None, label="target")


def _unsplit(n_pos, n_neg):
    rows = [f"{i},1" for i in range(n_pos)] + [f"{i},0" for i in range(n_neg)]
    return ("x,target\n" + "\n".join(rows) + "\n").encode()


def test_without_split_column_a_stratified_seeded_split():
    data = parse_csv(_unsplit(30, 70), source="s", features=None, label="target")
    assert len(data.y_test) == math.ceil(100 * 0.34)
    assert data.y_train.mean() == pytest.approx(data.y_test.mean(), abs=2 / len(data.y_test))
    again = parse_csv(_unsplit(30, 70), source="s", features=None, label="target")
    np.testing.assert_array_equal(data.x_test, again.x_test)
    other = parse_csv(_unsplit(30, 70), source="s", features=None, label="target", seed=7)
    assert not np.array_equal(np.sort(data.x_test[:, 0]), np.sort(other.x_test[:, 0]))


def test_split_fraction_is_honoured_and_checked():
    data = parse_csv(_unsplit(50, 50), source="s", features=None, label="target", test_fraction=0.2)
    assert len(data.y_test) == 20
    with pytest.raises(DatasetError, match="strictly between 0 and 1"):
        parse_csv(_unsplit(5, 5), source="s", features=None, label="target", test_fraction=1.0)


def test_too_few_rows_to_split():
    with pytest.raises(DatasetError, match="cannot split 1 rows"):
        parse_csv(_unsplit(1, 0), source="s", features=None, label="target")
