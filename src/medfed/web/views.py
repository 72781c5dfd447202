"""A study and the consortium as plain JSON documents: what the dashboard draws and the report
prints, built from exactly what the admin API returns (``pb.StudyStatus``, ``pb.NodeInfo``).

One builder serves both, so the report's JSON, the report's HTML and the live page can never
disagree on a number. Every value keeps the name the coordinator records it under (README, "What
the evaluation numbers are"), and each curve is a list of ``[round, value]`` pairs: a round a
hospital skipped is absent, never drawn as zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from medfed.protocol.v1 import medfed_pb2 as pb

Point = list[float]
"""``[round, value]``."""

GLOBAL_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy, all hospitals' test patients"),
    ("balanced_accuracy_pooled", "balanced accuracy, pooled"),
    ("auc_pooled", "AUC, pooled"),
    ("auc_site_mean", "AUC, mean of the hospitals' own"),
    ("auprc_pooled", "AUPRC, pooled"),
    ("loss", "loss (cross-entropy)"),
)
SITE_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("auc", "AUC"),
    ("balanced_accuracy", "balanced accuracy"),
    ("loss", "loss (cross-entropy)"),
)
SPREAD_KEYS = ("accuracy", "auc", "loss")
SECAGG_PREFIX = "secagg_"
SECAGG_STAGES = ("advertise", "share", "train_mask", "reveal", "unmask")
"""Stage durations a secure round records as ``secagg_<stage>_s`` (coordinator/secure_round.py)."""
FINISHED = frozenset({"completed", "failed", "cancelled"})
LEDGER_HEAD_PENDING = None
"""``provenance.ledger_head`` until the admin API exposes the ledger head: pass the head to
:func:`study_view` (the dashboard: ``create_app(..., ledger_head=...)``) and every page and
report shows it in the slot already there."""


def spec_sha256(status: pb.StudyStatus) -> str:
    """SHA-256 of the spec in the coordinator's stored form: the hash a model bundle records."""
    from medfed.coordinator.spec import spec_from_proto

    return hashlib.sha256(spec_from_proto(status.spec).to_json().encode()).hexdigest()


def study_view(status: pb.StudyStatus, ledger_head: str | None = None) -> dict[str, Any]:
    """Everything the study page and the report show about one study; ``ledger_head``: the
    coordinator's ledger head as text (height and hash), when the caller could read it."""
    hospitals = _hospitals(status)
    return {
        "study_id": status.study_id,
        "name": status.spec.name,
        "state": status.state,
        "finished": status.state in FINISHED,
        "message": status.message,
        "completed_rounds": status.completed_rounds,
        "rounds_planned": status.spec.rounds,
        "protocol": protocol_summary(status.spec),
        "provenance": {
            "spec_sha256": spec_sha256(status),
            "plan": f"{status.spec.plan.name} v{status.spec.plan.version}",
            "plan_sha256": status.spec.plan.sha256,
            "model_sha256": status.model_sha256,
            "ledger_head": ledger_head or LEDGER_HEAD_PENDING,
        },
        "hospitals": hospitals,
        "labels": {"global": dict(GLOBAL_METRICS), "site": dict(SITE_METRICS)},
        "rounds": [_round_row(r) for r in status.rounds],
        "global": _global_curves(status.rounds),
        "per_hospital": _site_curves(status.rounds),
        "spread": _spread(status.rounds),
        "participation": [
            {"round": r.round, "selected": r.selected, "accepted": r.accepted}
            for r in status.rounds
        ],
        "upload_bytes": [
            [r.round, r.metrics["upload_bytes"]]
            for r in status.rounds
            if "upload_bytes" in r.metrics
        ],
        "privacy": privacy_view(status.rounds),
        "secure_aggregation": secagg_view(status),
        "refusals": [
            {"round": f.round, "node": f.node, "code": f.code or "rejected", "reason": f.reason}
            for f in status.refusals
        ],
        "sites": [
            {
                "node": s.node,
                "status": s.status,
                "reason": s.reason,
                "last_seen_unix_ms": s.last_seen_unix_ms,
            }
            for s in status.sites
        ],
    }


def protocol_summary(spec: pb.StudySpec) -> dict[str, Any]:
    """The study protocol as a reviewer reads it: data, model, training recipe, protections."""
    summary: dict[str, Any] = {
        "dataset": spec.dataset.name,
        "features": list(spec.dataset.features),
        "label": spec.dataset.label,
        "plan": f"{spec.plan.name} v{spec.plan.version}",
        "strategy": spec.strategy.name,
        "strategy_params": dict(sorted(spec.strategy.params.items())),
        "rounds": spec.rounds,
        "local_epochs": spec.local_epochs,
        "local_steps": spec.local_steps,
        "batch_size": spec.batch_size,
        "optimizer": spec.optimizer,
        "learning_rate": spec.learning_rate,
        "min_nodes": spec.min_nodes,
        "round_deadline_s": spec.round_deadline_s,
        "eval_every": spec.eval_every,
        "seed": spec.seed,
        "nodes": list(spec.nodes) or "every hospital holding the dataset",
        "compression": spec.compression or "none",
        "personalization": spec.personalization or "none",
        "record_dp": None,
        "secure_aggregation": None,
    }
    dp = spec.record_dp
    if dp.epsilon or dp.noise_multiplier:
        summary["record_dp"] = {
            "epsilon": dp.epsilon, "delta": dp.delta, "noise_multiplier": dp.noise_multiplier,
            "max_grad_norm": dp.max_grad_norm, "accountant": dp.accountant,
        }  # fmt: skip
    sa = spec.secure_aggregation
    if sa.enabled:
        summary["secure_aggregation"] = {
            "threshold": sa.threshold, "degree": sa.degree, "clip": sa.clip,
            "stage_deadline_s": sa.stage_deadline_s,
        }  # fmt: skip
    return summary


def privacy_view(rounds: Sequence[pb.RoundSummary]) -> dict[str, Any]:
    """Record-level epsilon each hospital reports spending on this study, per round, and the
    budget it has left (the node's own ledger, privacy/ledger.py); empty without DP."""
    spent: dict[str, list[Point]] = {}
    left: dict[str, float] = {}
    for r in rounds:
        for m in r.train_per_node:
            if "epsilon" in m.metrics:
                spent.setdefault(m.node, []).append([r.round, m.metrics["epsilon"]])
            if "epsilon_budget_left" in m.metrics:
                left[m.node] = m.metrics["epsilon_budget_left"]
    latest = {node: points[-1][1] for node, points in spent.items()}
    return {"epsilon": spent, "latest": latest, "budget_left": left}


def secagg_view(status: pb.StudyStatus) -> dict[str, Any]:
    """Stage timings (seconds) and dropouts per round, as the secure rounds recorded them."""
    stages: dict[str, list[Point]] = {}
    dropouts: list[Point] = []
    for r in status.rounds:
        for stage in SECAGG_STAGES:
            key = f"{SECAGG_PREFIX}{stage}_s"
            if key in r.metrics:
                stages.setdefault(stage, []).append([r.round, r.metrics[key]])
        if f"{SECAGG_PREFIX}dropouts" in r.metrics:
            dropouts.append([r.round, r.metrics[f"{SECAGG_PREFIX}dropouts"]])
    return {
        "enabled": bool(status.spec.secure_aggregation.enabled),
        "stages": stages,
        "dropouts": dropouts,
    }


def node_view(nodes: Iterable[pb.NodeInfo]) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "status": "revoked" if n.revoked else "online" if n.online else "offline",
            "last_seen_unix_ms": n.last_seen_unix_ms,
            "datasets": [{"name": d, **_sizes(n.dataset_sizes, d)} for d in n.datasets],
            "agent_version": n.agent_version or None,
            "cert_not_after_unix_ms": n.cert_not_after_unix_ms or None,
        }
        for n in nodes
    ]


def studies_view(studies: Iterable[pb.StudyStatus]) -> list[dict[str, Any]]:
    """The studies list: state, progress and, for a waiting study, who is missing and why (the
    coordinator's message names each missing hospital and its reason)."""
    return [
        {
            "study_id": s.study_id,
            "name": s.spec.name,
            "state": s.state,
            "completed_rounds": s.completed_rounds,
            "rounds_planned": s.spec.rounds,
            "message": s.message,
        }
        for s in studies
    ]


def _sizes(sizes: Iterable[pb.DatasetSize], name: str) -> dict[str, int]:
    for z in sizes:
        if z.name == name:
            return {"train_rows": z.train_rows, "test_rows": z.test_rows}
    return {}


def _hospitals(status: pb.StudyStatus) -> list[str]:
    names = {s.node for s in status.sites}
    for r in status.rounds:
        names.update(m.node for m in r.per_node)
        names.update(m.node for m in r.train_per_node)
    names.update(f.node for f in status.refusals)
    return sorted(names)


def _round_row(r: pb.RoundSummary) -> dict[str, Any]:
    return {
        "round": r.round,
        "model_sha256": r.model_sha256,
        "selected": r.selected,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "duration_s": r.duration_s,
        "committed_unix_ms": r.committed_unix_ms,
        "metrics": dict(sorted(r.metrics.items())),
        "per_hospital": {m.node: dict(sorted(m.metrics.items())) for m in r.per_node},
        "rejections": list(r.rejections),
    }


def _global_curves(rounds: Sequence[pb.RoundSummary]) -> dict[str, list[Point]]:
    curves = {
        key: [[r.round, r.metrics[key]] for r in rounds if key in r.metrics]
        for key, _ in GLOBAL_METRICS
    }
    return {key: points for key, points in curves.items() if points}


def _site_curves(rounds: Sequence[pb.RoundSummary]) -> dict[str, dict[str, list[Point]]]:
    """metric -> hospital -> its own value per evaluated round (its test split)."""
    out: dict[str, dict[str, list[Point]]] = {}
    for key, _ in SITE_METRICS:
        per: dict[str, list[Point]] = {}
        for r in rounds:
            for m in r.per_node:
                if key in m.metrics:
                    per.setdefault(m.node, []).append([r.round, m.metrics[key]])
        if per:
            out[key] = dict(sorted(per.items()))
    return out


def _spread(rounds: Sequence[pb.RoundSummary]) -> dict[str, dict[str, list[Point]]]:
    out: dict[str, dict[str, list[Point]]] = {}
    for key in SPREAD_KEYS:
        bands = {
            side: [
                [r.round, r.metrics[f"{key}_{side}"]]
                for r in rounds
                if f"{key}_{side}" in r.metrics
            ]
            for side in ("min", "max", "std")
        }
        if any(bands.values()):
            out[key] = bands
    return out
