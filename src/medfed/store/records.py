"""What the state store hands out: frozen records, and their mapping to and from table rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from medfed.errors import StoreError
from medfed.store.db import RoundNodeMetricsRow, RoundRow, StudyRow

MetricsKind = Literal["train", "eval"]
_KINDS: frozenset[str] = frozenset(("train", "eval"))
REJECTION_SEP = ": "


@dataclass(frozen=True)
class NodeRecord:
    name: str
    last_seen_unix: float
    datasets: tuple[str, ...]
    first_seen_unix: float


@dataclass(frozen=True)
class StudyRecord:
    study_id: str
    name: str
    spec_json: str
    state: str
    completed_rounds: int
    model_sha256: str
    message: str
    created_unix: float
    updated_unix: float
    state_sha256: str = ""
    """The strategy's server state (e.g. FedAdam's moments) after the last committed round;
    empty when the strategy keeps none."""


@dataclass(frozen=True)
class NodeRoundMetrics:
    node: str
    kind: MetricsKind
    num_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class EncryptedEval:
    """Where a round's encrypted evaluation sum is stored, what it holds, and over how many."""

    sha256: str
    names: tuple[str, ...]
    sites: int


@dataclass(frozen=True)
class RoundRecord:
    """A committed round. ``metrics`` are the aggregated ones (evaluation may add to them later);
    ``rejections`` read ``"node: reason"``."""

    study_id: str
    round: int
    model_sha256: str
    selected: int
    accepted: int
    rejected: int
    duration_s: float
    committed_unix: float
    metrics: dict[str, float]
    per_node: tuple[NodeRoundMetrics, ...]
    rejections: tuple[str, ...]
    state_sha256: str = ""
    selected_nodes: tuple[str, ...] = ()
    """Who was asked to train (the ledger records them; ``selected`` is their count)."""
    updates: tuple[Mapping[str, Any], ...] = ()
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """A robust aggregator's evidence per node (:mod:`medfed.strategies.flags`)."""
    """Each accepted reply's signed proof (:meth:`medfed.ledger.updates.UpdateProof.to_json`)."""


def check_kinds(per_node: Sequence[NodeRoundMetrics]) -> None:
    for entry in per_node:
        if entry.kind not in _KINDS:
            raise StoreError(
                f"node {entry.node!r}: metrics kind {entry.kind!r} is not train or eval"
            )


def join_rejection(node: str, reason: str) -> str:
    return f"{node}{REJECTION_SEP}{reason}"


def split_rejection(text: str) -> tuple[str, str]:
    node, sep, reason = text.partition(REJECTION_SEP)
    if not sep or not node:
        raise StoreError(f"rejection {text!r} must read 'node: reason'")
    return node, reason


def float_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items()}


def study_record(row: StudyRow) -> StudyRecord:
    return StudyRecord(
        study_id=row.study_id,
        name=row.name,
        spec_json=row.spec_json,
        state=row.state,
        completed_rounds=row.completed_rounds,
        model_sha256=row.model_sha256,
        message=row.message,
        created_unix=row.created_unix,
        updated_unix=row.updated_unix,
        state_sha256=row.state_sha256 or "",
    )


def round_row(record: RoundRecord) -> RoundRow:
    return RoundRow(
        study_id=record.study_id,
        round=record.round,
        model_sha256=record.model_sha256,
        state_sha256=record.state_sha256,
        selected=record.selected,
        accepted=record.accepted,
        rejected=record.rejected,
        duration_s=record.duration_s,
        committed_unix=record.committed_unix,
        metrics_json=json.dumps(float_metrics(record.metrics)),
    )


def node_rows(
    study_id: str, round: int, per_node: Sequence[NodeRoundMetrics]
) -> list[RoundNodeMetricsRow]:
    return [
        RoundNodeMetricsRow(
            study_id=study_id,
            round=round,
            node=m.node,
            kind=m.kind,
            num_examples=m.num_examples,
            metrics_json=json.dumps(float_metrics(m.metrics)),
        )
        for m in per_node
    ]


def round_record(
    row: RoundRow, per_node: list[NodeRoundMetrics], rejections: list[str]
) -> RoundRecord:
    return RoundRecord(
        study_id=row.study_id,
        round=row.round,
        model_sha256=row.model_sha256,
        selected=row.selected,
        accepted=row.accepted,
        rejected=row.rejected,
        duration_s=row.duration_s,
        committed_unix=row.committed_unix,
        metrics=json.loads(row.metrics_json),
        per_node=tuple(per_node),
        rejections=tuple(rejections),
        state_sha256=row.state_sha256 or "",
    )
