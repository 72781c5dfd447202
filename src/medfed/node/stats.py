"""A statistics task at the hospital: the site's Table 1 summary, under its own disclosure control.

The node answers a TASK_KIND_STATS task only for a dataset its data steward registered (an OMOP
dataset is read through its consent study, as for training), summarizes **all** its rows (training
and test split together: Table 1 describes the cohort, not a split), and applies its own k (node
config ``stats_k``, default 5, never below 3; raised to the study's floor if that is higher).

Columns: the dataset's label and every feature whose values are all 0/1 are binary; a feature
with bin edges in the query is continuous; other features are left out unless the query names
them in its features (then they need bins). The group column must be binary.

Differencing across queries: the site's release log is kept per dataset (not per study: each
query is a study of its own, and two queries over one dataset are exactly what a differencing
attack combines), so a query whose cohort or stratum differs from an earlier release of that
dataset by 1..k-1 persons is refused, and the log pins the dataset to the first query's bin
edges. Rows are identified by a hash of their values plus the occurrence number among identical
rows: a CSV has no patient id, and this stays stable when other rows come or go.

Under secure aggregation (the task carries SecAgg+ stage 3) the same summary is turned into the
query's fixed vector (analytics.secure_table), with the rows' exact fixed-bin counts and attrition
counts in its controlled region, and only its masked words leave, with no row count. A query that
names attrition steps (``StatsSpec.attrition``, from the cohort spec) is refused unless the
dataset's cohort ran exactly those steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medfed.analytics import secure_table, wire
from medfed.analytics.release_log import ReleaseLog
from medfed.analytics.site import fine_histograms, summarize
from medfed.analytics.spec import DEFAULT_K, Column, ColumnKind, StatsSpec, check_k
from medfed.analytics.summary import SiteSummary
from medfed.data.dataset import Dataset
from medfed.data.registry import DatasetRegistry
from medfed.data.tabular import TabularDataset
from medfed.errors import ConfigError, DatasetError, PolicyError, TrainingError
from medfed.node.policy import check_cohort
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.standardize import pooled_standardizer

META_TENSOR = "meta.json"
"""Must match medfed.coordinator.stats.META_TENSOR (the node never imports the coordinator)."""


@dataclass(frozen=True)
class Table:
    """The rows a site summarizes: all of a tabular dataset, with its column descriptions."""

    matrix: npt.NDArray[np.float64]
    columns: tuple[Column, ...]
    person_ids: npt.NDArray[np.int64]
    attrition: tuple[tuple[str, int], ...] = ()


class StatsResponder:
    """Answers statistics tasks from the node's registered datasets."""

    def __init__(
        self, site: str, datasets: DatasetRegistry, state_dir: Path, k: int = DEFAULT_K
    ) -> None:
        self._site = site
        self._datasets = datasets
        self._state_dir = state_dir
        self._k = check_k(k)

    def answer(self, task: pb.Task) -> tuple[int, tensors.Weights]:
        """(cohort size, upload) for ``task``; PolicyError (with a code) when refused.

        DisclosureError (a small subset, a differencing attempt) propagates for the caller to
        refuse with its own code and message."""
        summary = self.summary(task)
        arrays, meta = wire.to_arrays(summary)
        return summary.totals[0], upload(arrays, meta)

    def secure_words(self, task: pb.Task) -> npt.NDArray[np.uint32]:
        """The site's secure-aggregation input (analytics.secure_table): the same disclosure
        control first (a refusal refuses the whole query), then the query's fixed layout, with
        the exact fixed-bin and attrition counts of the same rows in its controlled region."""
        summary, table, spec = self._summarize(task)
        try:
            lay = secure_table.layout(spec, tuple(task.dataset.features))
            fine = fine_histograms(table.matrix, table.columns, spec)
            steps = [count for _, count in table.attrition] if spec.attrition else []
            return secure_table.to_words(secure_table.site_vector(summary, spec, lay, fine, steps))
        except ConfigError as exc:
            raise PolicyError("bad_stats_query", str(exc)) from exc

    def summary(self, task: pb.Task) -> SiteSummary:
        """The site's disclosure-controlled summary for ``task`` (see ``answer``)."""
        return self._summarize(task)[0]

    def _summarize(self, task: pb.Task) -> tuple[SiteSummary, Table, StatsSpec]:
        try:
            spec = StatsSpec.from_json(json.loads(task.stats.spec_json))
        except (ValueError, ConfigError) as exc:
            raise PolicyError("bad_stats_query", f"unreadable statistics query: {exc}") from exc
        try:
            check_cohort(self._datasets.get(task.dataset.name), task.dataset.cohort_sha256)
        except DatasetError as exc:
            raise PolicyError("dataset_unavailable", str(exc)) from exc
        table = self.table(task.dataset.name, spec, tuple(task.dataset.features))
        log = ReleaseLog.in_state_dir(self._state_dir, f"dataset-{task.dataset.name}")
        try:
            summary = summarize(
                table.matrix, table.columns, spec, self._k, log,
                site=self._site, person_ids=table.person_ids, attrition=table.attrition,
            )  # fmt: skip
        except (ConfigError, DatasetError) as exc:
            raise PolicyError("bad_stats_query", str(exc)) from exc
        return summary, table, spec

    def table(self, name: str, spec: StatsSpec, wanted: tuple[str, ...] = ()) -> Table:
        """The dataset's rows as a summarizable table (the steward's registry decides)."""
        try:
            entry = self._datasets.get(name)
            if entry.kind == "omop":
                loaded = self._datasets.load_omop(name)
                data: Any = loaded.extraction.dataset
                steps = tuple((s.step, s.entries) for s in loaded.extraction.attrition)
            else:
                data = self._datasets.load(name)
                steps = ()
        except DatasetError as exc:
            raise PolicyError("dataset_unavailable", str(exc)) from exc
        if not isinstance(data, TabularDataset):
            raise PolicyError("dataset_unavailable", f"dataset {name!r} is not a table")
        return tabular_table(data, spec, wanted, steps)


def tabular_table(
    data: TabularDataset,
    spec: StatsSpec,
    wanted: tuple[str, ...] = (),
    attrition: tuple[tuple[str, int], ...] = (),
) -> Table:
    """All rows (train + test) with the label as a last column; columns chosen as the module
    docstring says. ``wanted`` (the study's features) restricts the columns, group included."""
    x = np.vstack([data.x_train, data.x_test]).astype(np.float64)
    y = np.concatenate([data.y_train, data.y_test]).astype(np.float64)
    full = np.hstack([x, y[:, None]])
    names = (*data.features, data.label)
    unknown = set(wanted) - set(names)
    if unknown:
        raise PolicyError("schema_mismatch", f"the dataset has no columns {sorted(unknown)}")
    chosen: list[int] = []
    columns: list[Column] = []
    for j, name in enumerate(names):
        values = full[:, j]
        finite = values[np.isfinite(values)]
        binary = bool(np.isin(finite, (0.0, 1.0)).all())
        if name in spec.bins:
            kind = ColumnKind.CONTINUOUS
        elif binary:
            kind = ColumnKind.BINARY
        elif name in wanted:
            raise PolicyError("bad_stats_query", f"column {name!r} is not 0/1 and has no bins")
        else:
            continue
        if wanted and name not in wanted and name != spec.group:
            continue
        chosen.append(j)
        columns.append(Column(name, kind))
    if attrition and attrition[-1][1] != len(full):  # the chain must end at the rows summarized
        attrition = ()
    return Table(full[:, chosen], tuple(columns), row_ids(full), attrition)


def row_ids(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """A stable id per row: SHA-256 of its values and its occurrence among identical rows."""
    seen: dict[bytes, int] = {}
    ids = np.empty(len(matrix), dtype=np.int64)
    for i, row in enumerate(np.ascontiguousarray(matrix, dtype=np.float64)):
        key = row.tobytes()
        n = seen.get(key, 0)
        seen[key] = n + 1
        digest = hashlib.sha256(key + n.to_bytes(8, "little")).digest()
        ids[i] = int.from_bytes(digest[:8], "little", signed=True)
    return ids


def with_pooled_standardization(task: pb.Task, data: Dataset) -> Dataset:
    """The task's dataset, set to standardize with the study's pooled statistics if it has any
    (federated standardization; columns without them keep this site's own)."""
    if not task.HasField("standardization"):
        return data
    pooled = task.standardization
    if not isinstance(data, TabularDataset):
        raise PolicyError("bad_standardization", "pooled standardization is for tables only")
    if not (len(pooled.features) == len(pooled.mean) == len(pooled.std)):
        raise PolicyError("bad_standardization", "pooled statistics of unequal lengths")
    stats = {f: (m, s) for f, m, s in zip(pooled.features, pooled.mean, pooled.std, strict=True)}
    try:
        mean, std = pooled_standardizer(data.features, data.x_train, stats)
    except TrainingError as exc:
        raise PolicyError("bad_standardization", str(exc)) from exc
    return dataclasses.replace(data, standardization=(mean, std))


def upload(arrays: dict[str, npt.NDArray[np.float64]], meta: dict[str, Any]) -> tensors.Weights:
    """The summary's arrays plus its metadata as a uint8 tensor: one ordinary tensor upload."""
    out: tensors.Weights = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    blob = json.dumps(meta, sort_keys=True, allow_nan=False).encode()
    out[META_TENSOR] = np.frombuffer(blob, dtype=np.uint8).copy()
    return out
