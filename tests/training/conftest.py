import pytest

from tests.training.synthetic_data import synthetic


@pytest.fixture
def data():
    return synthetic(0)
