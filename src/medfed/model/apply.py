"""Using a model bundle on a hospital's own raw data, exactly as the node evaluated it.

Nothing here re-implements the node. A CSV is parsed by the connector behind the node's dataset
registry (``data.csv_source.parse_csv``: the same schema checks and the same split -- the split
column, or the same seeded stratified split), DICOM images by the registry's connector
(``data.dicom.connector.scan``: decode, PHI gate, split), and the plan's own ``evaluate`` and
``predict`` prepare the inputs as ``local_evaluate`` does at the node: for tables, standardized
with the statistics of *this* site's training rows. On the data a site registered, ``evaluate``
therefore gives the metrics that site reported to the coordinator.

sklearn (through the CSV connector) and pydicom are imported only by the functions that read
data, so the CLI can import this module without them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medfed.data.dataset import Dataset
from medfed.data.images import ImageDataset
from medfed.data.tabular import TabularDataset
from medfed.errors import BundleError, DatasetError, TrainingError
from medfed.model.bundle import BundleInfo, ModelBundle
from medfed.training.metrics import sigmoid
from medfed.training.plan import EvalResult, TrainingPlan
from medfed.training.registry import get_plan, plan_sha256
from medfed.training.standardize import pooled_standardizer

TOLERANCE = 1e-9
"""How far a re-computed metric may be from the coordinator's record and still reproduce it: the
same code on the same rows gives the same doubles; the slack only forgives summation order."""


@dataclass(frozen=True)
class Comparison:
    metric: str
    measured: float
    recorded: float

    @property
    def matches(self) -> bool:
        return math.isclose(self.measured, self.recorded, rel_tol=0.0, abs_tol=TOLERANCE)


def installed_plan(info: BundleInfo) -> tuple[TrainingPlan, bool]:
    """The locally installed plan the bundle names, and whether its code hash is the one the
    study pinned (a different hash may still compute the same, but nothing vouches for it)."""
    plan = get_plan(info.plan, info.plan_version)
    return plan, plan_sha256(plan) == info.plan_sha256


def load_table(info: BundleInfo, path: Path, split_column: str | None) -> TabularDataset:
    """A site's CSV, as its node's registry reads it: features in model order, label, split."""
    from medfed.data.csv_source import open_csv, parse_csv

    _need_kind(info, "table", "--csv")
    data = _read(path)
    _, header = open_csv(data, str(path))
    required = [*info.features, info.label, *([split_column] if split_column else [])]
    check_columns(str(path), header, info, required, optional=())
    return parse_csv(
        data, source=str(path), features=info.features, label=info.label, split_column=split_column
    )


def load_rows(
    info: BundleInfo, path: Path, split_column: str | None
) -> tuple[npt.NDArray[np.float32], list[int]]:
    """Rows to score (features, in model order) and their line numbers; a label or split column
    may be present, nothing else unexpected (a misnamed feature must not pass unnoticed)."""
    from medfed.data.csv_source import open_csv, parse_features

    _need_kind(info, "table", "--csv")
    data = _read(path)
    _, header = open_csv(data, str(path))
    optional = [info.label, *([split_column] if split_column else [])]
    check_columns(str(path), header, info, list(info.features), optional)
    return parse_features(data, source=str(path), features=info.features)


def load_images(
    info: BundleInfo, folder: Path, labels: Path, split_column: str | None, skip_bad: bool
) -> tuple[ImageDataset, tuple[tuple[str, str], ...]]:
    """A site's DICOM folder through the registry's connector, at the bundle's image size; also
    (file, reason) for each image left out under ``skip_bad``."""
    from medfed.data.dicom.connector import DicomSource, scan

    _need_kind(info, "image", "--dicom")
    shape = info.image_shape
    if shape is None or shape[1] != shape[2]:
        raise BundleError(f"this model takes {info.features[0]}; only square images can be read")
    source = DicomSource(folder, labels, info.label, split_column, shape[1], allow_bad=skip_bad)
    result = scan(source)
    if result.dataset.image_shape != shape:
        raise BundleError(
            f"{folder}: images read as {result.dataset.features[0]}, the model takes "
            f"{info.features[0]}"
        )
    return result.dataset, result.bad


def check_columns(
    source: str,
    header: Sequence[str],
    info: BundleInfo,
    required: Sequence[str],
    optional: Collection[str],
) -> None:
    """Refuse a file whose columns are not the model's, naming what is missing and what is extra:
    a column renamed or encoded differently (``cp`` instead of ``cp_2, cp_3, cp_4``) would
    otherwise be scored as garbage."""
    missing = [c for c in required if c not in header]
    extra = [c for c in header if c not in required and c not in optional]
    if missing or extra:
        raise BundleError(
            f"{source}: the columns do not match the model: missing {missing}, extra {extra}. "
            f"The model takes the features {list(info.features)} (in any order) and the label "
            f"{info.label!r}"
        )


def evaluate(bundle: ModelBundle, plan: TrainingPlan, data: Dataset) -> EvalResult:
    """The test-split metrics, by the plan's ``evaluate``: the node's own code path."""
    return plan.evaluate(bundle.weights, prepared(bundle, data))


def prepared(bundle: ModelBundle, data: Dataset) -> Dataset:
    """``data`` set to standardize as the study's nodes did: with the pooled statistics the
    bundle's spec records (federated standardization), else with the site's own."""
    pooled = bundle.info.pooled_statistics
    if not pooled or not isinstance(data, TabularDataset):
        return data
    try:
        stats = pooled_standardizer(data.features, data.x_train, pooled)
    except TrainingError as exc:
        raise BundleError(str(exc)) from exc
    return dataclasses.replace(data, standardization=stats)


def predict_site(
    bundle: ModelBundle, plan: TrainingPlan, data: Dataset
) -> list[tuple[str, float, float]]:
    """(split, label, probability) for every row: training rows, then test rows, each in file
    order (labels-file order for images)."""
    out: list[tuple[str, float, float]] = []
    data = prepared(bundle, data)
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        view = dataclasses.replace(data, x_test=x, y_test=y)
        p = sigmoid(plan.predict(bundle.weights, view))
        out.extend((split, float(label), float(prob)) for label, prob in zip(y, p, strict=True))
    return out


def predict_rows(
    bundle: ModelBundle, plan: TrainingPlan, site: Dataset, x: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Probabilities for new rows ``x``, prepared with ``site``'s training statistics -- the
    statistics the model was evaluated with at that site."""
    if not isinstance(site, TabularDataset):
        raise BundleError("scoring separate rows is for tables; images carry their own scale")
    view = dataclasses.replace(
        prepared(bundle, site), x_test=x, y_test=np.zeros(len(x), dtype=np.float32)
    )
    return sigmoid(plan.predict(bundle.weights, view))


def compare(measured: Mapping[str, float], recorded: Mapping[str, float]) -> list[Comparison]:
    """Each metric both sides have, measured here against the coordinator's record."""
    return [Comparison(k, measured[k], recorded[k]) for k in sorted(measured) if k in recorded]


def _need_kind(info: BundleInfo, kind: str, option: str) -> None:
    if info.input_kind == kind:
        return
    if info.input_kind == "image":
        raise BundleError(
            f"this model takes images ({info.features[0]}), not {option}: give --dicom DIR "
            "--labels FILE"
        )
    raise BundleError(
        f"this model takes a table of {len(info.features)} features, not {option}: give --csv FILE"
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
