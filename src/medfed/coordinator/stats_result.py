"""A statistics study's query and stored result: what ``medfed study stats`` sends and reads.

The result is a blob in the coordinator's model store (``RESULT_TENSOR``: JSON as uint8, the way
CKKS contexts are kept), committed as the study's round 1 "model": the Table 1 in the report's
long format and the accepted site summaries in their wire form, so a reader can re-render it with
the same pure ``analytics.combine``. An admin downloads it like any model, by hash. A secure query
(``secure_aggregation``) stores no site summaries: only the released region of the unmasked sum,
the disclosure-controlled pooled histograms and attrition (never the exact pooled counts they were
protected from) and the pooled-only Table 1 (``"pooled_only": true`` in the table's JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medfed.analytics import report, secure_table, wire
from medfed.analytics.combine import combine, standardization
from medfed.analytics.secure_release import PooledRelease, pooled_table
from medfed.analytics.spec import StatsSpec
from medfed.analytics.table1 import Table1
from medfed.coordinator.secure_stats import SecureStats
from medfed.coordinator.spec import StudySpec
from medfed.errors import ConfigError, ProtocolError, StoreError
from medfed.protocol import tensors
from medfed.store.records import StudyRecord

RESULT_TENSOR = "stats_result"
QUERY_TENSOR = "stats_query"
"""The "initial model" of a statistics study: its query, so the study starts from a real blob."""
RESULT_VERSION = 1
WireSummary = tuple[dict[str, list[Any]], dict[str, Any]]
"""A summary as stored: {array name: [shape, flat values]} and its wire metadata."""


def query_blob(spec: StudySpec) -> tensors.Weights:
    """What a statistics study is submitted with in place of an initial model."""
    return {QUERY_TENSOR: np.frombuffer(spec.stats_spec.encode(), dtype=np.uint8).copy()}


@dataclass(frozen=True)
class StatsResult:
    """A stored statistics result, read back: the query, Table 1 and the sites' summaries."""

    spec: StatsSpec
    table: Table1
    document: dict[str, Any]


def table1_document(table: Table1) -> dict[str, Any]:
    """Table 1 as JSON: the long format of ``analytics.report`` (a record per number)."""
    fields = (*report.FIELDS, "note")
    return {
        "sites": list(table.sites),
        "columns": list(table.columns),
        "k": list(table.k),
        "spec": table.spec_fingerprint,
        "withheld": [list(w) for w in table.withheld],
        "records": [{f: getattr(r, f) for f in fields} for r in report.records(table)],
    }


def stored_form(arrays: Mapping[str, npt.NDArray[np.float64]], meta: dict[str, Any]) -> WireSummary:
    return {k: [list(a.shape), a.ravel().tolist()] for k, a in arrays.items()}, meta


def result_blob(
    table: Table1, query: StatsSpec, summaries: Sequence[WireSummary]
) -> tensors.Weights:
    """Table 1 and the summaries it was combined from, as one uint8 tensor of JSON."""
    doc = {
        "version": RESULT_VERSION,
        "query": query.to_json(),
        "table1": table1_document(table),
        "summaries": [{"arrays": arrays, "meta": meta} for arrays, meta in summaries],
    }
    text = json.dumps(doc, sort_keys=True, allow_nan=False)
    return {RESULT_TENSOR: np.frombuffer(text.encode(), dtype=np.uint8).copy()}


def secure_result_blob(
    done: SecureStats, query: StatsSpec, features: Sequence[str]
) -> tensors.Weights:
    """A secure query's result: the pooled-only Table 1, the released region of the summed
    vector and the protected release of its controlled region (analytics.secure_release; the
    exact pooled fixed-bin and attrition counts are not stored); no site's summary exists."""
    secure = {
        "features": list(features),
        "sites": done.sites,
        "sums": done.released_sums.tolist(),
        "release": done.release.to_json(),
    }
    doc = {
        "version": RESULT_VERSION,
        "query": query.to_json(),
        "table1": table1_document(done.table) | {"pooled_only": True, "pooled_k": done.release.k},
        "secure": secure,
        "summaries": [],
    }
    text = json.dumps(doc, sort_keys=True, allow_nan=False)
    return {RESULT_TENSOR: np.frombuffer(text.encode(), dtype=np.uint8).copy()}


def read_result(weights: Mapping[str, npt.NDArray[np.generic]]) -> StatsResult:
    """A stored result blob back to Table 1 (recombined from the summaries it holds)."""
    raw = weights.get(RESULT_TENSOR)
    if raw is None or raw.dtype != np.uint8:
        raise ProtocolError("this blob is not a statistics result")
    try:
        doc = json.loads(raw.tobytes().decode())
        if doc["version"] != RESULT_VERSION:
            raise ProtocolError(f"statistics result version {doc['version']} is unknown")
        spec = StatsSpec.from_json(doc["query"])
        if "secure" in doc:  # pooled only: rebuilt from the stored sum
            secure = doc["secure"]
            lay = secure_table.layout(spec, [str(f) for f in secure["features"]])
            sums = np.asarray(secure["sums"], dtype=np.float64)
            released = PooledRelease.from_json(
                secure.get("release", {"k": 0, "histograms": {}, "attrition": []})
            )
            table = pooled_table(sums, spec, lay, int(secure["sites"]), released)
            return StatsResult(spec, table, doc["table1"])
        summaries = [
            wire.from_arrays(
                {
                    k: np.asarray(v[1], dtype=np.float64).reshape(v[0])
                    for k, v in s["arrays"].items()
                },
                s["meta"],
            )
            for s in doc["summaries"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed statistics result: {exc!r}") from exc
    return StatsResult(spec, combine(summaries, spec), doc["table1"])


def stats_study(
    query: StatsSpec,
    dataset: str,
    *,
    name: str = "stats",
    features: Sequence[str] = (),
    min_nodes: int = 1,
    nodes: Sequence[str] = (),
    deadline_s: float = 120.0,
    cohort_sha256: str = "",
) -> StudySpec:
    """The study spec of a statistics query (submit it with ``query_blob`` as its model).

    ``cohort_sha256`` pins the dataset to a cohort spec (every site must have registered it);
    a query naming attrition steps needs it, since the steps are that spec's."""
    if query.attrition and not cohort_sha256:
        raise ConfigError(
            "a statistics query with attrition steps needs the dataset pinned by the cohort "
            "spec they come from (cohort_sha256)"
        )
    return StudySpec(
        name=name,
        dataset=dataset,
        cohort_sha256=cohort_sha256,
        features=tuple(features),
        label="",
        plan="stats",
        plan_version="1",
        rounds=1,
        eval_every=0,
        min_nodes=min_nodes,
        nodes=tuple(nodes),
        round_deadline_s=deadline_s,
        stats_spec=json.dumps(query.to_json(), sort_keys=True),
    )


def resolve_standardization(
    spec: StudySpec,
    study: Callable[[str], StudyRecord],
    blob: Callable[[str], tensors.Weights],
) -> StudySpec:
    """Fill ``pooled_standardization`` from the statistics study ``spec.standardize`` names.

    Refused (ConfigError, at submission) unless that study is a completed statistics study of
    the same dataset whose pooled moments are complete for every feature used: standardizing
    with part of the data would be silently wrong. Note the pooled std is the sample std
    (ddof=1) over every row the sites summarized, training and test splits together.
    """
    if not spec.standardize:
        return dataclasses.replace(spec, pooled_standardization={})
    source = spec.standardize.removeprefix("pooled:")
    try:
        record = study(source)
    except StoreError as exc:
        raise ConfigError(f"standardize: {exc}") from exc
    source_spec = StudySpec.from_json(record.spec_json)
    if not source_spec.stats_spec or record.state != "completed":
        raise ConfigError(f"standardize: {source!r} is not a completed statistics study")
    if source_spec.dataset != spec.dataset:
        raise ConfigError(
            f"standardize: {source!r} summarized dataset {source_spec.dataset!r}, "
            f"the study trains on {spec.dataset!r}"
        )
    pooled = standardization(read_result(blob(record.model_sha256)).table)
    chosen = {f: _usable(*pooled[f]) for f in spec.features if f in pooled}
    if not chosen:
        raise ConfigError(f"standardize: {source!r} has pooled statistics for none of the features")
    return dataclasses.replace(spec, pooled_standardization=chosen)


def _usable(mean: float, std: float) -> tuple[float, float]:
    """A constant column is centred, not scaled (as training.standardize does)."""
    flat = not math.isfinite(std) or std <= 1e-8 * (1.0 + abs(mean))
    return mean, 1.0 if flat else std
