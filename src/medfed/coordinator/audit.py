"""A privacy audit at the coordinator: one round in which sites measure membership inference.

A study whose spec carries ``audit_of`` (``medfed study audit ID``) runs here instead of the
training loop, like a statistics study (coordinator/stats.py): submission, node selection, the
task board, mTLS identity, the state store and ``study status`` apply unchanged.

    audited study completed? its final model is this study's model? -> its sites (the ones that
    sent an accepted training reply; or the audit's own ``nodes``, each of which then decides for
    itself) -> one TASK_KIND_AUDIT task each -> every reply judged on its own
    -> round 1 committed with each site's numbers as its per-node metrics

What a site may send is fixed here (``AUDIT_METRICS``): an attack's AUC and TPR at 1 % FPR, the
sample sizes, the release flag and the threshold behind it. The reply is a header alone; a
reply carrying any tensor, any other metric name, or a value out of range is refused, so no
per-row score can arrive. Nodes compute the numbers in medfed.node.audit.

A site whose steward set ``audit_auc_threshold`` asks, through ``block_release``, that the model
not be released; once the round commits the engine's ``audit_recorded`` hook hands the audit to
the release gate (medfed.coordinator.release), which records the request in the ledger, opens the
council's proposal, and withholds the model from download while the block holds.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from medfed.coordinator.replies import task_config
from medfed.coordinator.rounds import OpenRound, Rejected, TaskSlot, TaskStatus
from medfed.coordinator.spec import StudySpec, dataset_ref, standardization_of
from medfed.coordinator.stats import StatsHooks
from medfed.errors import ConfigError, StoreError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics, RoundRecord, StudyRecord

log = logging.getLogger("medfed.coordinator")

ATTACKS = ("loss", "lira", "calibrated")
RATES = frozenset(
    {f"{a}_auc" for a in ATTACKS} | {f"{a}_tpr_at_low_fpr" for a in ATTACKS} | {"low_fpr"}
)
COUNTS = frozenset({"members", "non_members", "reference_models"})
AUDIT_METRICS = RATES | COUNTS | {"auc_threshold", "block_release"}
"""Every name a site's audit reply may carry: aggregates only."""
REQUIRED = frozenset({"loss_auc", "loss_tpr_at_low_fpr", "members", "non_members"})


@dataclass
class AuditRound(OpenRound):
    """The one round of an audit: each site's accepted numbers."""

    results: dict[str, dict[str, float]] = field(default_factory=dict)

    def accept_audit(self, slot: TaskSlot, rows: int, metrics: Mapping[str, float]) -> None:
        with self.cond:
            if self.closed:
                slot.status = TaskStatus.REJECTED
                raise Rejected(f"round {self.round} closed while the audit was arriving")
            self.results[slot.node] = dict(metrics)
            self.per_node.append(NodeRoundMetrics(slot.node, "eval", rows, dict(metrics)))
            self._finish(slot, TaskStatus.ACCEPTED)


def receive_audit(
    round_: OpenRound, slot: TaskSlot, header: pb.UpdateHeader, frames: Iterator[bytes]
) -> None:
    """Judge one audit reply; Rejected says why it is refused."""
    if not isinstance(round_, AuditRound):
        raise Rejected("an audit reply arrived for a round that is not an audit")
    if next(frames, None) is not None:
        raise Rejected("an audit reply is its header alone: aggregate numbers, no arrays")
    if header.HasField("score_histogram") or header.encrypted_metrics:
        raise Rejected("an audit reply carries no score histogram and no ciphertext")
    metrics = check_audit_metrics(dict(header.metrics), header.num_examples, slot.max_examples)
    round_.accept_audit(slot, header.num_examples, metrics)


def check_audit_metrics(
    metrics: Mapping[str, float], rows: int, max_rows: int | None
) -> dict[str, float]:
    """The reply's metrics if they are exactly the aggregates an honest site sends."""
    unknown = sorted(set(metrics) - AUDIT_METRICS)
    if unknown:
        raise Rejected(f"an audit reply carries aggregate numbers only; refused {unknown[:5]}")
    missing = sorted(REQUIRED - set(metrics))
    if missing:
        raise Rejected(f"the audit reply lacks {missing}")
    for name in RATES | {"auc_threshold", "block_release"}:
        if name in metrics and not 0.0 <= metrics[name] <= 1.0:
            raise Rejected(f"{name} must be in [0, 1], got {metrics[name]}")
    for name in COUNTS:
        value = metrics.get(name, 0.0)
        if not (value >= 0 and float(value).is_integer()):
            raise Rejected(f"{name} must be a whole number >= 0, got {value}")
    if metrics["members"] < 1 or metrics["non_members"] < 1:
        raise Rejected("an audit needs at least one member and one non-member row")
    if rows != metrics["members"] + metrics["non_members"]:
        raise Rejected(f"the reply claims {rows} rows, its samples add up to another number")
    if max_rows and rows > max_rows:
        raise Rejected(f"the reply claims {rows} rows, more than the {max_rows} its node holds")
    if metrics.get("block_release", 0.0) not in (0.0, 1.0):
        raise Rejected("block_release is 0 or 1")
    return dict(metrics)


AUTO_AUDIT_DEADLINE_S = 600.0
"""Seconds each site has to answer an audit the coordinator submits itself."""


def audit_spec_for(
    audited: StudySpec, study_id: str, nodes: tuple[str, ...] = (), deadline_s: float = 600.0
) -> StudySpec:
    """The audit's study spec: the audited study's data and plan, one round, no training knobs
    that would need anything else (strategy, secure aggregation, DP are the audited study's)."""
    name = f"audit of {audited.name}"[:80].rstrip()
    return dataclasses.replace(
        audited, name=name, rounds=1, audit_of=study_id, nodes=nodes, min_nodes=1,
        round_deadline_s=deadline_s, strategy="fedavg", strategy_params={},
        secure_aggregation=False, he_context_sha256="", max_site_weight=0.0, standardize="",
        pooled_standardization={}, dp_epsilon=0.0, dp_noise_multiplier=0.0, eval_every=1,
        contributions="data_size", audit_on_complete=False,
    )  # fmt: skip


def follow_up_audit(
    audited: StudySpec, record: StudyRecord, create: Callable[[str, StudySpec, str], None]
) -> str:
    """``[privacy] audit_on_complete``: the audit of the study ``record`` that just completed,
    created (``create(audit_id, spec, model_sha256)``) as if its researcher had run ``medfed
    study audit``; its id."""
    audit_id = "s-" + secrets.token_hex(6)
    spec = audit_spec_for(audited, record.study_id, (), AUTO_AUDIT_DEADLINE_S)
    create(audit_id, spec, record.model_sha256)
    return audit_id


def audited_model(
    spec: StudySpec,
    weights: tensors.Weights,
    study: Callable[[str], StudyRecord],
    model: Callable[[str], tensors.Weights],
) -> tensors.Weights:
    """An audit submitted with no model (as ``medfed study audit`` submits it) audits the
    audited study's final model, read from the coordinator's store: the researcher needs no copy
    of a model that may be withheld from release. Any other submission keeps its own model."""
    if not spec.audit_of or weights:
        return weights
    try:
        target = study(spec.audit_of)
    except StoreError:
        raise ConfigError(f"there is no study {spec.audit_of!r} to audit") from None
    return model(target.model_sha256)


def participants(parts_rounds: list[RoundRecord]) -> list[str]:
    """The sites whose training reply a committed round of the audited study accepted."""
    return sorted({m.node for r in parts_rounds for m in r.per_node if m.kind == "train"})


def run_audit(hooks: StatsHooks, spec: StudySpec, record: StudyRecord) -> None:
    """The whole audit: check the audited study, one dispatch, commit or fail with reasons."""
    if record.completed_rounds >= 1:  # restarted after the commit: the results are stored
        hooks.set_state("completed", "privacy audit recorded")
        _tell(hooks)
        return
    state = hooks.parts.state
    try:
        target = state.study(spec.audit_of)
    except StoreError:
        hooks.set_state("failed", f"there is no study {spec.audit_of!r} to audit")
        return
    if target.state != "completed":
        hooks.set_state("failed", f"study {target.study_id} is {target.state}; only a "
                        "completed study's released model is audited")  # fmt: skip
        return
    if target.model_sha256 != record.model_sha256:
        hooks.set_state("failed", f"this audit's model is not study {target.study_id}'s final "
                        "model; submit that model (medfed study audit does)")  # fmt: skip
        return
    audited = StudySpec.from_json(target.spec_json)
    asked = spec.nodes or tuple(participants(state.rounds(target.study_id)))
    if not asked:
        hooks.set_state("failed", f"no site trained in study {target.study_id}")
        return
    wanted = dataclasses.replace(spec, nodes=asked, min_nodes=min(spec.min_nodes, len(asked)))
    nodes = hooks.select(wanted)
    if nodes is None:
        return
    hooks.set_state("running", f"privacy audit: asking {len(nodes)} site(s)")
    round_ = AuditRound(study_id=hooks.study_id, round=1, kind=pb.TASK_KIND_AUDIT,
                        deadline=time.monotonic() + spec.round_deadline_s)  # fmt: skip
    _dispatch(hooks, audited, target, round_, nodes)
    if hooks.halt.is_set():
        return
    if not round_.results:
        reasons = "; ".join(round_.rejections[-4:])
        for rejection in round_.rejections:
            node, _, cause = rejection.partition(": ")
            state.record_rejection(hooks.study_id, 1, node, cause, now=hooks.parts.wall())
        hooks.set_state("failed", "no site sent an audit" + (f": {reasons}" if reasons else ""))
        return
    _commit(hooks, round_, target.model_sha256, len(nodes))


def _dispatch(
    hooks: StatsHooks, audited: StudySpec, target: StudyRecord, round_: AuditRound,
    nodes: list[str],
) -> None:  # fmt: skip
    p = hooks.parts
    deadline_ms = int((p.wall() + round_.deadline - time.monotonic()) * 1000)
    for node in nodes:
        task = pb.Task(
            task_id=secrets.token_hex(16),
            study_id=hooks.study_id,
            round=1,
            kind=pb.TASK_KIND_AUDIT,
            model_sha256=target.model_sha256,
            dataset=dataset_ref(audited),
            plan=pb.PlanRef(
                name=audited.plan, version=audited.plan_version, sha256=audited.plan_sha256
            ),
            config=task_config(audited, audited.rounds, {}, {}),
            deadline_unix_ms=deadline_ms,
            max_update_bytes=1 << 16,
            standardization=standardization_of(audited),
            audit=pb.AuditQuery(study_id=target.study_id),
        )
        sizes = p.directory.announced(node, audited.dataset)
        limit = sizes.train_rows + sizes.test_rows if sizes is not None else 0
        round_.slots[task.task_id] = TaskSlot(task, node, max_examples=limit)
    p.board.open(round_)
    try:
        round_.wait(stop=hooks.halt)
    finally:
        p.board.close(round_)
    p.progress.record(round_)


def _commit(hooks: StatsHooks, round_: AuditRound, model_sha256: str, selected: int) -> None:
    results = round_.results
    highest = max(max(v for k, v in m.items() if k.endswith("_auc")) for m in results.values())
    flagged = sum(m.get("block_release", 0.0) == 1.0 for m in results.values())
    hooks.parts.state.commit_round(
        RoundRecord(
            study_id=hooks.study_id, round=1, model_sha256=model_sha256, selected=selected,
            accepted=len(results), rejected=selected - len(results),
            duration_s=time.monotonic() - round_.started, committed_unix=hooks.parts.wall(),
            metrics={"max_attack_auc": highest, "sites_flagging_release": float(flagged)},
            per_node=tuple(round_.per_node), rejections=tuple(round_.rejections),
        )
    )  # fmt: skip
    flags = f"; {flagged} site(s) flag release" if flagged else ""
    hooks.set_state("completed", f"privacy audit of {len(results)} site(s){flags}")
    _tell(hooks)
    log.info("study %s: audit of %d sites recorded", hooks.study_id, len(results))


def _tell(hooks: StatsHooks) -> None:
    """Hand the committed audit to the release gate (block requests, the council's proposals)."""
    if hooks.parts.audit_recorded is not None:
        hooks.parts.audit_recorded(hooks.study_id)
