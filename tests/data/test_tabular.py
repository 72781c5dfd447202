import numpy as np
import pytest

from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError


def make(x_train, y_train, x_test=None, y_test=None, features=("a", "b")):
    x_test = x_train if x_test is None else x_test
    y_test = y_train if y_test is None else y_test
    return TabularDataset(features, "y", x_train, y_train, x_test, y_test)


def test_valid_dataset_reports_size():
    x = np.zeros((3, 2), np.float32)
    data = make(x, np.array([0, 1, 1], np.float32))
    assert data.n_features == 2
    assert data.rows == 6


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (np.zeros((3, 3), np.float32), np.zeros(3, np.float32)),
        (np.zeros((3, 2), np.float32), np.zeros(2, np.float32)),
        (np.zeros((3, 2), np.float64), np.zeros(3, np.float32)),
        (np.zeros((3, 2), np.float32), np.array([0, 2, 1], np.float32)),
        (np.zeros(3, np.float32), np.zeros(3, np.float32)),
    ],
)
def test_inconsistent_arrays_are_refused(x, y):
    with pytest.raises(DatasetError):
        make(x, y)
