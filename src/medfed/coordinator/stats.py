"""A statistics study at the coordinator: one round of site summaries, combined into Table 1.

A study whose spec carries a stats query (``StudySpec.stats_spec``) runs here instead of the
training loop; everything else a study has (submission, node selection, the task board and
long-polls, mTLS identity, the state store, ``study status``) applies unchanged:

    select sites -> one TASK_KIND_STATS task each -> every reply judged on its own
        (wire form, spec fingerprint, counts: integers, >= 0, never in 1..k-1, shapes)
    -> analytics.combine(accepted summaries) -> result blob in the model store
    -> round 1 committed with the blob's hash as the study's "model": a restart keeps it

A site that refuses (its disclosure control, a differencing attempt, no such dataset) is a
refusal like any other, with its reason in ``study status``. Nothing is retried: a refusal under
disclosure control does not change by asking again.

The result blob (stats_result.py) holds the Table 1 in the report's long format and the
accepted site summaries in their wire form, so ``medfed study stats-show`` re-renders it with the
same pure ``combine``. Under ``secure_aggregation`` (coordinator/secure_stats.py) the sites send
fixed vectors through SecAgg+ instead, and the blob holds only the released part of their sum,
the disclosure-controlled pooled histograms and attrition, and the pooled-only Table 1.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medfed.analytics import wire
from medfed.analytics.combine import combine
from medfed.analytics.spec import MIN_K, StatsSpec
from medfed.analytics.summary import CategoricalSummary, SiteSummary
from medfed.analytics.table1 import Table1
from medfed.coordinator.rounds import OpenRound, Rejected, TaskSlot, TaskStatus
from medfed.coordinator.secure_round import Stages
from medfed.coordinator.secure_stats import receive_masked, secure_sum
from medfed.coordinator.spec import StudySpec, dataset_ref
from medfed.coordinator.staging import StagingPool
from medfed.coordinator.stats_result import (
    WireSummary,
    result_blob,
    secure_result_blob,
    stored_form,
)
from medfed.errors import ConfigError, ProtocolError, SecAggError
from medfed.protocol import framing, streams, tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics, RoundRecord

if TYPE_CHECKING:
    from medfed.coordinator.engine import EngineParts

log = logging.getLogger("medfed.coordinator")

META_TENSOR = "meta.json"
"""The summary's JSON metadata travels as a uint8 tensor next to its float64 arrays."""
MAX_SUMMARY_BYTES = 16 << 20


@dataclass
class StatsRound(OpenRound):
    """The one round of a statistics study: accepted summaries by node."""

    spec: StatsSpec = field(default_factory=StatsSpec)
    summaries: dict[str, SiteSummary] = field(default_factory=dict)
    stored: dict[str, WireSummary] = field(default_factory=dict)

    def accept_summary(
        self,
        slot: TaskSlot,
        summary: SiteSummary,
        arrays: Mapping[str, npt.NDArray[np.float64]],
        meta: dict[str, Any],
    ) -> None:
        with self.cond:
            if self.closed:
                slot.status = TaskStatus.REJECTED
                raise Rejected(f"round {self.round} closed while the summary was arriving")
            self.summaries[slot.node] = summary
            self.stored[slot.node] = stored_form(arrays, meta)
            self.per_node.append(NodeRoundMetrics(slot.node, "train", summary.totals[0], {}))
            self._finish(slot, TaskStatus.ACCEPTED)


# -- receiving one site's summary -----------------------------------------------------------------


def receive_summary(
    round_: OpenRound,
    slot: TaskSlot,
    header: pb.UpdateHeader,
    frames: Iterator[bytes],
    pool: StagingPool,
) -> None:
    """Read, decode and judge one summary upload; Rejected/ProtocolError say why it is refused."""
    if not isinstance(round_, StatsRound):
        raise Rejected("a statistics reply arrived for a round that is not a statistics round")
    if slot.task.HasField("secagg"):
        receive_masked(round_, slot, header, frames, pool)
        return
    if slot.max_examples is not None and header.num_examples > slot.max_examples:
        raise Rejected(
            f"the reply claims {header.num_examples} rows, more than the "
            f"{slot.max_examples} its node announced for the dataset"
        )
    second = next(frames, None)
    kind, payload = framing.unframe(second) if second is not None else (0, memoryview(b""))
    if kind != framing.UPDATE_MANIFEST:
        raise Rejected("a statistics reply is a header, a manifest and the summary's arrays")
    manifest = tensors.manifest_from_proto(
        framing.parse_manifest(payload), max_bytes=MAX_SUMMARY_BYTES
    )
    wait_s = max(0.1, round_.deadline - time.monotonic())
    with pool.buffer(manifest.total_bytes, wait_s, owner=slot.node) as staging:
        streams.fill(staging.frames(frames), staging.view, framing.UPDATE_DATA)
        staging.received()
        weights = {k: np.array(v) for k, v in tensors.decode(manifest, staging.view).items()}
    arrays, meta = split_upload(weights)
    summary = wire.from_arrays(arrays, meta)
    check_summary(summary, round_.spec)
    if header.num_examples != summary.totals[0]:
        raise Rejected(
            f"the reply claims {header.num_examples} rows, its summary {summary.totals[0]}"
        )
    if summary.site != slot.node:
        raise Rejected(f"the summary names site {summary.site!r}, the sender is {slot.node!r}")
    round_.accept_summary(slot, summary, arrays, meta)


def split_upload(
    weights: Mapping[str, npt.NDArray[np.generic]],
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, Any]]:
    """The float64 arrays and the JSON metadata of an upload (any other dtype is refused)."""
    raw = weights.get(META_TENSOR)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ProtocolError(f"a statistics reply carries its metadata as a uint8 {META_TENSOR!r}")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the summary's metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ProtocolError("the summary's metadata must be a JSON object")
    arrays: dict[str, npt.NDArray[np.float64]] = {}
    for name, a in weights.items():
        if name == META_TENSOR:
            continue
        if a.dtype != np.float64:
            raise ProtocolError(f"summary array {name!r} is {a.dtype}, not float64")
        arrays[name] = np.asarray(a, dtype=np.float64)
    tensors.check_finite(arrays)
    return arrays, meta


def check_summary(summary: SiteSummary, spec: StatsSpec) -> None:
    """Refuse a summary no honest site would send under ``spec``: wrong spec, k below the floor,
    strata that do not fit the group, a released count in 1..k-1, moments that contradict their
    counts, merged bins outside the spec's. (``wire.from_arrays`` already refused negatives,
    fractions, wrong shapes and hidden totals.)"""
    if summary.spec_fingerprint != spec.fingerprint():
        raise Rejected("the summary was computed under a different stats spec")
    floor = max(MIN_K, spec.k_floor)
    if summary.k < floor:
        raise Rejected(f"the summary's k={summary.k} is below the study's floor {floor}")
    k = summary.k
    _check_columns(summary.columns, spec.group)
    if len(summary.totals) != len(summary.columns):
        raise Rejected("one total per column is required")
    if len(summary.columns) > 1 and sum(summary.totals[1:]) != summary.totals[0]:
        raise Rejected("the strata do not add up to the cohort")
    for where, count in _released_counts(summary):
        if 0 < count < k:
            raise Rejected(f"{where} releases {count}, below the site's k={k}")
    for f in summary.features:
        if isinstance(f, CategoricalSummary):
            continue
        if f.name not in spec.bins:
            raise Rejected(f"continuous feature {f.name!r} has no bins in the spec")
        fine = len(spec.bins[f.name]) + 1
        b = f.boundaries
        if b[0] != 0 or b[-1] != fine or any(y <= x for x, y in itertools.pairwise(b)):
            raise Rejected(f"merged bins of {f.name!r} do not cover the spec's {fine} bins")
        for c, m in enumerate(f.moments):
            if m is not None and (m.n != f.present[c] or m.m2 < 0):
                raise Rejected(f"moments of {f.name!r} contradict its released count")


def _check_columns(columns: tuple[str, ...], group: str | None) -> None:
    if not columns or columns[0] != "overall":
        raise Rejected("the first column of a summary is 'overall'")
    strata = columns[1:]
    if group is None and strata:
        raise Rejected("the summary has strata, the study asked for none")
    if any(not c.startswith(f"{group}=") for c in strata) or len(set(strata)) != len(strata):
        raise Rejected(f"the summary's strata are not levels of {group!r}")


def _released_counts(summary: SiteSummary) -> Iterator[tuple[str, int]]:
    for c, total in zip(summary.columns, summary.totals, strict=True):
        yield f"the size of {c!r}", total
    for step in summary.attrition:
        for count in (step.count, step.removed):
            if count is not None:
                yield f"attrition step {step.name!r}", count
    for f in summary.features:
        if isinstance(f, CategoricalSummary):
            cells: list[int | None] = [v for row in f.rows for v in row.cells]
        else:
            cells = [*f.present, *f.missing]
            cells += [v for h in f.histogram if h is not None for v in h]
        for v in cells:
            if v is not None:
                yield f"feature {f.name!r}", v


# -- running the study ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsHooks:
    """What the study's runner lends this module (see runner.StudyRunner)."""

    study_id: str
    parts: EngineParts
    select: Callable[[StudySpec], list[str] | None]
    set_state: Callable[[str, str], None]
    halt: threading.Event


def run_stats(hooks: StatsHooks, spec: StudySpec, completed_rounds: int) -> None:
    """The whole statistics study: one dispatch, then commit the result or fail with reasons."""
    if completed_rounds >= 1:  # restarted after the commit: the result is stored
        hooks.set_state("completed", "statistics combined")
        return
    nodes = hooks.select(spec)
    if nodes is None:
        return
    hooks.set_state("running", f"statistics: asking {len(nodes)} site(s)")
    round_ = StatsRound(
        study_id=hooks.study_id,
        round=1,
        kind=pb.TASK_KIND_STATS,
        deadline=time.monotonic() + spec.round_deadline_s,
        spec=StatsSpec.from_json(json.loads(spec.stats_spec)),
    )
    if spec.secure_aggregation:
        _run_secure(hooks, spec, round_, nodes)
        return
    _dispatch(hooks, spec, round_, nodes)
    if hooks.halt.is_set():
        return
    needed = min(spec.min_nodes, len(nodes))
    if len(round_.summaries) < needed:
        _fail(hooks, round_, f"{len(round_.summaries)} of {len(nodes)} sites sent a summary, "
              f"at least {needed} needed")  # fmt: skip
        return
    sites = sorted(round_.summaries)
    try:
        table = combine([round_.summaries[s] for s in sites], round_.spec)
    except ConfigError as exc:
        _fail(hooks, round_, f"the summaries do not combine: {exc}")
        return
    blob = result_blob(table, round_.spec, [round_.stored[s] for s in sites])
    _commit(hooks, round_, blob, len(nodes), len(sites), table)


def _run_secure(hooks: StatsHooks, spec: StudySpec, round_: StatsRound, nodes: list[str]) -> None:
    """The secure variant (coordinator/secure_stats.py): only the sum is unmasked and stored."""

    def dispatch(r: OpenRound, to: Sequence[str], stage: Stages) -> None:
        _dispatch(hooks, spec, r, list(to), stage)
        if hooks.halt.is_set():
            raise SecAggError("the coordinator is stopping")

    try:
        done = secure_sum(spec, round_.spec, round_, nodes, dispatch)
    except (SecAggError, ConfigError) as exc:
        if not hooks.halt.is_set():
            _fail(hooks, round_, f"secure aggregation aborted: {exc}")
        return
    blob = secure_result_blob(done, round_.spec, spec.features)
    _commit(hooks, round_, blob, len(nodes), done.sites, done.table)


def _commit(
    hooks: StatsHooks, round_: StatsRound, blob: tensors.Weights, selected: int, sites: int,
    table: Table1,
) -> None:  # fmt: skip
    sha = hooks.parts.models.put(blob)
    cohort = table.totals.pooled[0].value
    hooks.parts.state.commit_round(
        RoundRecord(
            study_id=hooks.study_id, round=1, model_sha256=sha, selected=selected,
            accepted=sites, rejected=selected - sites,
            duration_s=time.monotonic() - round_.started, committed_unix=hooks.parts.wall(),
            metrics={"cohort_n": float(cohort)} if cohort is not None else {},
            per_node=tuple(round_.per_node), rejections=tuple(round_.rejections),
        )
    )  # fmt: skip
    hooks.set_state("completed", f"statistics of {sites} site(s) combined")
    log.info("study %s: statistics of %d sites stored (%s)", hooks.study_id, sites, sha[:12])


def _dispatch(
    hooks: StatsHooks,
    spec: StudySpec,
    round_: OpenRound,
    nodes: list[str],
    stage: Stages | None = None,
) -> None:
    """One task of ``round_``'s kind per node (STATS, or a SecAgg+ stage with its payload)."""
    p = hooks.parts
    deadline_ms = int((p.wall() + round_.deadline - time.monotonic()) * 1000)
    query = pb.StatsQuery(spec_json=spec.stats_spec)
    for node in nodes:
        task = pb.Task(
            task_id=secrets.token_hex(16),
            study_id=hooks.study_id,
            round=1,
            kind=round_.kind,  # type: ignore[arg-type]
            dataset=dataset_ref(spec, label=False),
            deadline_unix_ms=deadline_ms,
            max_update_bytes=MAX_SUMMARY_BYTES,
            stats=query,
        )
        if stage is not None:
            task.secagg.CopyFrom(stage(node))
        sizes = p.directory.announced(node, spec.dataset)
        limit = sizes.train_rows + sizes.test_rows if sizes is not None else 0
        round_.slots[task.task_id] = TaskSlot(task, node, max_examples=limit)
    p.board.open(round_)
    try:
        round_.wait(stop=hooks.halt)
    finally:
        p.board.close(round_)
    p.progress.record(round_)


def _fail(hooks: StatsHooks, round_: OpenRound, why: str) -> None:
    now = hooks.parts.wall()
    for rejection in round_.rejections:
        node, _, cause = rejection.partition(": ")
        hooks.parts.state.record_rejection(hooks.study_id, 1, node, cause, now=now)
    reasons = "; ".join(round_.rejections[-4:])
    hooks.set_state(
        "failed", f"statistics not combined: {why}" + (f"; {reasons}" if reasons else "")
    )
