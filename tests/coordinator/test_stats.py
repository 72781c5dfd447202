from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pytest

from medfed.analytics import wire
from medfed.analytics.combine import combine
from medfed.analytics.site import summarize
from medfed.analytics.spec import Column, ColumnKind, StatsSpec
from medfed.analytics.summary import CategoricalSummary, CountRow, SiteSummary
from medfed.coordinator.rounds import Rejected, TaskBoard, TaskSlot
from medfed.coordinator.spec import StudySpec, spec_from_proto, spec_to_proto
from medfed.coordinator.stats import StatsRound, check_summary, split_upload
from medfed.coordinator.stats_result import (
    RESULT_TENSOR,
    read_result,
    resolve_standardization,
    result_blob,
    stats_study,
    stored_form,
)
from medfed.coordinator.uploads import StagingPool, receive
from medfed.errors import ConfigError, ProtocolError, StoreError
from medfed.node.stats import upload
from medfed.protocol import framing, tensors
from medfed.protocol.tensors import Weights
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.records import StudyRecord

SPEC = StatsSpec(bins={"age": (20.0, 40.0, 60.0, 80.0)}, group="sex")
COLUMNS = (
    Column("age", ColumnKind.CONTINUOUS),
    Column("sex", ColumnKind.BINARY),
    Column("smoker", ColumnKind.BINARY),
)


def site_matrix(seed: int, n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    binary = rng.integers(0, 2, (n, 2)).astype(float)
    return np.column_stack([rng.uniform(25, 75, n), binary])


def honest(site: str = "a", seed: int = 0, spec: StatsSpec = SPEC) -> SiteSummary:
    return summarize(site_matrix(seed), COLUMNS, spec, 5, site=site)


def test_an_honest_summary_passes() -> None:
    check_summary(honest(), SPEC)


def with_smoker_cells(summary: SiteSummary, cells: tuple[int | None, ...]) -> SiteSummary:
    features = tuple(
        CategoricalSummary(f.name, f.kind, (CountRow(f.rows[0].level, cells), *f.rows[1:]))
        if isinstance(f, CategoricalSummary)
        else f
        for f in summary.features
    )
    return dataclasses.replace(summary, features=features)


def bad_summaries() -> Iterator[tuple[SiteSummary, str]]:
    good = honest()
    yield honest(spec=StatsSpec(bins=SPEC.bins)), "different stats spec"
    yield dataclasses.replace(good, k=2), "below the study's floor"
    yield dataclasses.replace(good, columns=("overall", "age=1", "age=2")), "not levels of 'sex'"
    yield dataclasses.replace(good, totals=(good.totals[0] + 1, *good.totals[1:])), "add up"
    yield dataclasses.replace(good, columns=("all", *good.columns[1:])), "'overall'"
    age, smoker = good.features
    assert not isinstance(age, CategoricalSummary)
    moments = (dataclasses.replace(age.moments[0], n=age.moments[0].n + 1), *age.moments[1:])
    yield (
        dataclasses.replace(good, features=(dataclasses.replace(age, moments=moments), smoker)),
        "moments of 'age' contradict",
    )
    yield (
        dataclasses.replace(
            good, features=(dataclasses.replace(age, boundaries=(0, 2, 9)), smoker)
        ),
        "do not cover the spec's 5 bins",
    )


@pytest.mark.parametrize(("summary", "why"), list(bad_summaries()))
def test_a_summary_no_honest_site_sends_is_rejected(summary: SiteSummary, why: str) -> None:
    with pytest.raises(Rejected, match=why):
        check_summary(summary, SPEC)


def test_a_released_count_below_k_is_rejected_anywhere() -> None:
    no_histogram = StatsSpec(bins={"age": (20.0, 80.0)}, group="sex")
    good = honest(spec=no_histogram)
    with pytest.raises(Rejected, match="releases 4, below the site's k=5"):
        check_summary(with_smoker_cells(good, (30, 4, 26)), no_histogram)
    check_summary(with_smoker_cells(good, (30, None, None)), no_histogram)  # hidden is fine


def test_the_upload_round_trips_and_junk_is_refused() -> None:
    arrays, meta = wire.to_arrays(honest())
    weights = upload(arrays, meta)
    back, meta_back = split_upload(weights)
    assert meta_back == meta and back.keys() == arrays.keys()
    with pytest.raises(ProtocolError, match="metadata"):
        split_upload({k: v for k, v in weights.items() if k != "meta.json"})
    with pytest.raises(ProtocolError, match="not float64"):
        split_upload(weights | {"totals": arrays["totals"].astype(np.float32)})
    with pytest.raises(ProtocolError, match="not JSON"):
        split_upload(weights | {"meta.json": np.frombuffer(b"{nope", dtype=np.uint8)})
    with pytest.raises(ProtocolError):
        split_upload(weights | {"totals": np.array([np.nan])})


def test_the_stored_result_recombines_to_the_same_table() -> None:
    summaries = [honest("a", 0), honest("b", 1)]
    table = combine(summaries, SPEC)
    stored = [stored_form(*wire.to_arrays(s)) for s in summaries]

    result = read_result(result_blob(table, SPEC, stored))

    assert result.table == table
    assert result.spec == SPEC
    assert result.document["sites"] == ["a", "b"]
    json.dumps(result.document, allow_nan=False)
    with pytest.raises(ProtocolError, match="not a statistics result"):
        read_result({"weights": np.zeros(3, dtype=np.float32)})
    with pytest.raises(ProtocolError, match="malformed"):
        read_result({RESULT_TENSOR: np.frombuffer(b'{"version": 1}', dtype=np.uint8)})


def test_a_statistics_study_spec_round_trips_and_refuses_what_it_cannot_run() -> None:
    spec = stats_study(SPEC, "heart", min_nodes=2)
    assert spec_from_proto(spec_to_proto(spec)) == spec
    assert StudySpec.from_json(spec.to_json()) == spec
    assert StatsSpec.from_json(json.loads(spec.stats_spec)) == SPEC
    with pytest.raises(ConfigError, match="exactly one round"):
        dataclasses.replace(spec, rounds=2)
    with pytest.raises(ConfigError, match="needs the query's features named"):
        dataclasses.replace(spec, secure_aggregation=True)
    with pytest.raises(ConfigError, match="min_nodes >= 2"):
        dataclasses.replace(spec, secure_aggregation=True, features=("age",), min_nodes=1)
    secure = dataclasses.replace(spec, secure_aggregation=True, features=("age",))
    assert spec_from_proto(spec_to_proto(secure)) == secure
    with pytest.raises(ConfigError, match="stats query"):
        dataclasses.replace(spec, stats_spec='{"bins": {"age": [3, 1]}}')
    with pytest.raises(ConfigError, match="stats query"):
        dataclasses.replace(spec, stats_spec="[1")


def stats_round(max_examples: int | None = 1000) -> tuple[TaskBoard, StatsRound]:
    round_ = StatsRound("s-1", 1, pb.TASK_KIND_STATS, deadline=1e12, spec=SPEC)
    task = pb.Task(task_id="t0", study_id="s-1", round=1, kind=pb.TASK_KIND_STATS)
    round_.slots["t0"] = TaskSlot(task, "a", max_examples=max_examples)
    board = TaskBoard()
    board.open(round_)
    return board, round_


def frames(summary: SiteSummary, n: int | None = None) -> Iterator[bytes]:
    weights = upload(*wire.to_arrays(summary))
    header = pb.UpdateHeader(
        task_id="t0", study_id="s-1", round=1, num_examples=summary.totals[0] if n is None else n
    )
    yield framing.frame_message(framing.UPDATE_HEADER, header)
    manifest = tensors.manifest_to_proto(tensors.manifest_of(weights))
    yield framing.frame_message(framing.UPDATE_MANIFEST, manifest)
    for piece in tensors.iter_data(weights):
        yield framing.frame(framing.UPDATE_DATA, bytes(piece))


def test_a_summary_upload_is_received_through_the_update_path() -> None:
    board, round_ = stats_round()
    summary = honest()

    reply = receive(frames(summary), "a", board, StagingPool())

    assert reply.accepted, reply.reason
    assert round_.summaries["a"] == summary
    assert round_.per_node[0].num_examples == summary.totals[0]


@pytest.mark.parametrize(
    ("summary", "n", "limit", "why"),
    [
        (honest(), 59, 1000, "claims 59 rows, its summary 60"),
        (honest(), None, 10, "more than the 10 its node announced"),
        (honest(site="b"), None, 1000, "names site 'b'"),
        (honest(spec=StatsSpec(bins=SPEC.bins)), None, 1000, "different stats spec"),
    ],
)
def test_a_bad_summary_upload_is_rejected_with_the_reason(
    summary: SiteSummary, n: int | None, limit: int, why: str
) -> None:
    board, round_ = stats_round(limit)

    reply = receive(frames(summary, n), "a", board, StagingPool())

    assert not reply.accepted and why in reply.reason
    assert not round_.summaries and why in round_.rejections[0]


def stored_stats(spec: StudySpec, table_of: list[SiteSummary]) -> tuple[StudyRecord, Weights]:
    query = StatsSpec.from_json(json.loads(spec.stats_spec))
    stored = [stored_form(*wire.to_arrays(s)) for s in table_of]
    blob = result_blob(combine(table_of, query), query, stored)
    record = StudyRecord("s-stats", "stats", spec.to_json(), "completed", 1, "0" * 64, "", 0, 0)
    return record, blob


def test_pooled_standardization_resolves_from_a_completed_statistics_study() -> None:
    no_group = StatsSpec(bins=SPEC.bins)
    stats_spec = stats_study(no_group, "heart")
    sites = [honest("a", 0, no_group), honest("b", 1, no_group)]
    record, blob = stored_stats(stats_spec, sites)
    train = StudySpec(
        name="t", dataset="heart", features=("age", "sex"), label="y", plan="logistic_regression",
        plan_version="1", rounds=1, standardize="pooled:s-stats",
    )  # fmt: skip

    resolved = resolve_standardization(train, {"s-stats": record}.__getitem__, lambda _: blob)

    ages = np.concatenate([site_matrix(0)[:, 0], site_matrix(1)[:, 0]])
    assert resolved.pooled_standardization.keys() == {"age"}
    assert resolved.pooled_standardization["age"] == pytest.approx(
        (ages.mean(), ages.std(ddof=1)), rel=1e-12
    )
    assert spec_from_proto(spec_to_proto(resolved)) == resolved
    assert StudySpec.from_json(resolved.to_json()) == resolved
    forged = dataclasses.replace(train, standardize="", pooled_standardization={"age": (0, 1)})
    assert resolve_standardization(forged, {}.__getitem__, dict).pooled_standardization == {}


def test_pooled_standardization_from_anything_else_is_refused() -> None:
    no_group = StatsSpec(bins=SPEC.bins)
    record, blob = stored_stats(stats_study(no_group, "heart"), [honest("a", 0, no_group)])
    base = StudySpec(
        name="t", dataset="heart", features=("age",), label="y", plan="logistic_regression",
        plan_version="1", rounds=1, standardize="pooled:s-stats",
    )  # fmt: skip

    def missing(study_id: str) -> StudyRecord:
        raise StoreError(f"no study {study_id!r}")

    cases = [
        (base, missing, "no study 's-stats'"),
        (base, lambda _: dataclasses.replace(record, state="running"), "not a completed"),
        (dataclasses.replace(base, dataset="icu"), lambda _: record, "summarized dataset"),
        (dataclasses.replace(base, features=("bmi",)), lambda _: record, "none of the features"),
    ]
    for spec, study, why in cases:
        with pytest.raises(ConfigError, match=why):
            resolve_standardization(spec, study, lambda _: blob)
    with pytest.raises(ConfigError, match="standardize is"):
        dataclasses.replace(base, standardize="site")
