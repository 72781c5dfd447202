"""What the ledger records of a committed round and of a member, built from the store's records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from medfed.pki.signer import certificate_sha256
from medfed.store.db import LedgerMemberRow
from medfed.store.records import RoundRecord

PRIVACY_METRICS = ("epsilon", "epsilon_budget_left", "delta")
"""What a site's training reply reports of its privacy spending (record-level DP)."""
CONSENT_METRICS = ("consented_n", "consent_watermark")
"""What a site's data layer reports of patient consent (OMOP datasets)."""


def round_payload(record: RoundRecord, rejections: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ``round.committed`` payload: model, participants, signed updates, rejections with their
    reasons, privacy spent and consent watermark per site."""
    trained = [m for m in record.per_node if m.kind == "train"]
    return {
        "round": record.round,
        "model_sha256": record.model_sha256,
        "state_sha256": record.state_sha256,
        "selected": sorted(record.selected_nodes),
        "accepted": record.accepted,
        "updates": [dict(u) for u in record.updates],
        "examples": {m.node: m.num_examples for m in trained},
        "rejected": [{"node": node, "reason": reason} for node, reason in rejections],
        "flags": {node: list(codes) for node, codes in record.flags.items()},
        "privacy": _per_site(trained, PRIVACY_METRICS),
        "consent": _per_site(trained, CONSENT_METRICS),
    }


def _per_site(per_node: Sequence[Any], names: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in per_node:
        values = {k: float(m.metrics[k]) for k in names if k in m.metrics}
        if values:
            out[m.node] = values
    return out


def member_known(session: Session, pem: bytes) -> bool:
    return session.get(LedgerMemberRow, certificate_sha256(pem)) is not None


def remember_member(session: Session, pem: bytes, name: str, seq: int) -> None:
    session.add(LedgerMemberRow(sha256=certificate_sha256(pem), name=name, seq=seq))
