import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

import medfed.data
from medfed.data.csv_source import load_csv
from medfed.data.heart_disease import (
    HEART_FEATURES,
    HEART_HOSPITALS,
    HEART_LABEL,
    export_heart_csvs,
    heart_disease_centres,
)

BUNDLE = Path(medfed.data.__file__).parent / "builtin" / "uci_heart_disease"

# Train/test sizes published by FLamby (fed_heart_disease/README.md) and restated in SOURCES.md.
FLAMBY_SPLITS = {
    "cleveland": (199, 104),
    "hungary": (172, 89),
    "switzerland": (30, 16),
    "va_long_beach": (85, 45),
}

# SHA-256 over float32 (x_train, y_train, x_test, y_test) per centre, from FLamby's own
# HeartDiseaseRaw code run under pandas 3.1.1 / scikit-learn 1.9.1 on the same four files, with
# its type-split restecg dummies merged (6_1.0 + 6_1 -> restecg_1, 6_2.0 + 6_2 -> restecg_2).
FLAMBY_REFERENCE = {
    "cleveland": "724f0485b851534523223cbde35d3dc28c7443b95e173a9e6bfb9fa5b5f7f7d4",
    "hungary": "4cc1ff0b4684ed7517c940cae382ce3dca3d20b1548ffec3d9e57bea06410634",
    "switzerland": "d4888255757de4d3eae20c1155ca67408c6f962ce2f67df7896375e447399c51",
    "va_long_beach": "d2e5d77bb2bd78e8361bab8e69d2cb05c69dc88be97cfe8bb1f99c13772c2bf8",
}


@pytest.fixture(scope="module")
def centres():
    return heart_disease_centres()


def test_bundled_files_are_the_uci_originals():
    sources = (BUNDLE / "SOURCES.md").read_text()
    rows = re.findall(
        r"\| (processed\.\w+\.data|heart-disease\.names) \| \d+ \| ([0-9a-f]{32}) \|", sources
    )
    assert len(rows) == 5
    for name, md5 in rows:
        assert hashlib.md5((BUNDLE / name).read_bytes()).hexdigest() == md5


def test_centres_in_order_with_flamby_sizes(centres):
    assert list(centres) == list(HEART_HOSPITALS) == list(FLAMBY_SPLITS)
    for key, data in centres.items():
        assert (len(data.y_train), len(data.y_test)) == FLAMBY_SPLITS[key]
    assert sum(d.rows for d in centres.values()) == 740


def test_thirteen_float32_features(centres):
    for data in centres.values():
        assert data.features == HEART_FEATURES
        assert data.label == HEART_LABEL
        assert data.x_train.dtype == data.x_test.dtype == np.float32
        assert data.x_train.shape[1] == 13


def test_matches_flamby_preprocessing(centres):
    for key, data in centres.items():
        digest = hashlib.sha256()
        for array in (data.x_train, data.y_train, data.x_test, data.y_test):
            digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
        assert digest.hexdigest() == FLAMBY_REFERENCE[key], key


def test_dummies_encode_one_category_each(centres):
    for data in centres.values():
        x = np.concatenate([data.x_train, data.x_test])
        for prefix in ("cp_", "restecg_"):
            cols = [i for i, f in enumerate(HEART_FEATURES) if f.startswith(prefix)]
            assert set(np.unique(x[:, cols])) <= {0.0, 1.0}
            assert (x[:, cols].sum(axis=1) <= 1).all()


def test_split_is_stratified_where_flamby_stratifies(centres):
    for key in ("cleveland", "hungary", "va_long_beach"):
        data = centres[key]
        gap = abs(data.y_train.mean() - data.y_test.mean())
        assert gap < 2 / len(data.y_test), key


def test_export_round_trips_exactly(centres, tmp_path):
    paths = export_heart_csvs(tmp_path)
    assert list(paths) == list(centres)
    for key, path in paths.items():
        loaded = load_csv(path, features=None, label=HEART_LABEL, split_column="split")
        assert loaded.features == HEART_FEATURES
        for name in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(centres[key], name))
