"""UCI Heart Disease as FLamby's Fed-Heart-Disease: four real hospitals, one binary task.

Janosi, Steinbrunn, Pfisterer, Detrano (1988), UCI ML Repository, doi:10.24432/C52P4X (CC BY 4.0;
see ``builtin/uci_heart_disease/SOURCES.md``). The preprocessing follows FLamby (Ogier du Terrail
et al., NeurIPS 2022, ``flamby/datasets/fed_heart_disease/dataset.py``) so results are comparable:

1. per centre: drop slope/ca/thal (columns 10-12, mostly missing outside Cleveland), drop rows with
   any missing value (``?``), label = ``num > 0``;
2. per centre: ``train_test_split(arange(n), train_size=0.66, random_state=43)``, stratified on the
   label when both classes have more than two rows;
3. one-hot encode chest-pain type (cp) and resting ECG (restecg) with the first category dropped,
   over the category set of all centres together, dummies after the numeric columns.

One deliberate difference: FLamby's pandas code reads restecg as *text* in the two centres whose
file has a ``?`` in that column (Hungary, Switzerland) and as numbers elsewhere, so
``get_dummies`` sees "0" and 0.0 as different categories and emits 16 features, with Hungary's and
Switzerland's ECG in columns no other centre uses. We encode the values, not their parse type: 13
features, the same rows, splits and labels. FLamby's restecg "1"/"2" columns merge into ours; its
"0" column is the dropped reference level.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError

HEART_LABEL = "target"
HEART_FEATURES: tuple[str, ...] = (
    "age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak",
    "cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2",
)  # fmt: skip
HEART_HOSPITALS: dict[str, str] = {
    "cleveland": "Cleveland",
    "hungary": "Hungary",
    "switzerland": "Switzerland",
    "va_long_beach": "VA Long Beach",
}
_FILES = {
    "cleveland": "processed.cleveland.data",
    "hungary": "processed.hungarian.data",
    "switzerland": "processed.switzerland.data",
    "va_long_beach": "processed.va.data",
}
_RAW_COLUMNS = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak",
)  # fmt: skip
_DROPPED = (10, 11, 12)  # slope, ca, thal
_LABEL_COLUMN = 13
_CATEGORICAL = (2, 6)  # cp, restecg
_TRAIN_FRACTION = 0.66
_SPLIT_SEED = 43
_MISSING = frozenset({"?", ""})

Float64Array = npt.NDArray[np.float64]


def heart_disease_centres() -> dict[str, TabularDataset]:
    """The four centres, keyed as in ``HEART_HOSPITALS``, preprocessed as FLamby does."""
    raw = {key: _read_centre(_bundled_text(name), name) for key, name in _FILES.items()}
    encoded, names = _one_hot([x for x, _ in raw.values()])
    if names != HEART_FEATURES:
        raise DatasetError(
            f"bundled heart disease files give features {names}, not {HEART_FEATURES}"
        )
    out = {}
    for (key, (_, y)), x in zip(raw.items(), encoded, strict=True):
        train = np.zeros(len(y), dtype=bool)
        train[_split(y)] = True
        out[key] = TabularDataset(
            features=HEART_FEATURES,
            label=HEART_LABEL,
            x_train=x[train],
            y_train=y[train],
            x_test=x[~train],
            y_test=y[~train],
        )
    return out


def export_heart_csvs(out_dir: Path) -> dict[str, Path]:
    """One CSV per centre (features, ``target``, ``split``), the form a hospital would register."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, data in heart_disease_centres().items():
        path = out_dir / f"{key}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*data.features, HEART_LABEL, "split"])
            for split, x, y in (
                ("train", data.x_train, data.y_train),
                ("test", data.x_test, data.y_test),
            ):
                for row, label in zip(x, y, strict=True):
                    writer.writerow([*(_float_text(v) for v in row), int(label), split])
        paths[key] = path
    return paths


def _bundled_text(file_name: str) -> str:
    folder = resources.files("medfed.data").joinpath("builtin", "uci_heart_disease")
    return folder.joinpath(file_name).read_text(encoding="ascii")


def _read_centre(text: str, source: str) -> tuple[Float64Array, npt.NDArray[np.float32]]:
    """Features (columns 0-9 of the UCI file) and 0/1 labels of the complete rows, in file order."""
    kept = [j for j in range(_LABEL_COLUMN) if j not in _DROPPED]
    xs, ys = [], []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != _LABEL_COLUMN + 1:
            raise DatasetError(f"{source} line {line}: {len(row)} columns, expected 14")
        cells = [row[j].strip() for j in [*kept, _LABEL_COLUMN]]
        if any(cell in _MISSING for cell in cells):
            continue
        try:
            values = [float(cell) for cell in cells]
        except ValueError as exc:
            raise DatasetError(f"{source} line {line}: {exc}") from None
        xs.append(values[:-1])
        ys.append(0.0 if values[-1] == 0 else 1.0)
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float32)


def _split(labels: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """Train row indices exactly as FLamby draws them: same call, seed and stratify rule."""
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(counts) > 1 and bool((counts > 2).all()) else None
    train, _ = train_test_split(
        np.arange(len(labels)),
        test_size=1.0 - _TRAIN_FRACTION,
        train_size=_TRAIN_FRACTION,
        random_state=_SPLIT_SEED,
        shuffle=True,
        stratify=stratify,
    )
    return np.sort(np.asarray(train, dtype=np.int64))


def _one_hot(centres: list[Float64Array]) -> tuple[list[npt.NDArray[np.float32]], tuple[str, ...]]:
    """``pd.get_dummies(concat, columns=[2, 6], drop_first=True)`` with a global category set."""
    pooled = np.concatenate(centres)
    numeric = [j for j in range(len(_RAW_COLUMNS)) if j not in _CATEGORICAL]
    names = [_RAW_COLUMNS[j] for j in numeric]
    levels = {j: np.unique(pooled[:, j])[1:] for j in _CATEGORICAL}
    for j in _CATEGORICAL:
        names += [f"{_RAW_COLUMNS[j]}_{_level_text(v)}" for v in levels[j]]
    out = []
    for x in centres:
        dummies = [x[:, [j]] == levels[j][None, :] for j in _CATEGORICAL]
        out.append(np.hstack([x[:, numeric], *dummies]).astype(np.float32))
    return out, tuple(names)


def _level_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _float_text(value: np.float32) -> str:
    """Shortest text that reads back as the same float32 (so an export/load round trip is exact)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")
