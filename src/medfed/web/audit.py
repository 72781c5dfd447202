"""The "Privacy audit" section of a study's report and dashboard page: what the audits measured.

A privacy audit (``medfed study audit``) is its own one-round study whose spec names the audited
study (``audit_of``); its round holds each site's aggregate numbers (medfed.coordinator.audit).
``audit_view`` gathers every audit of one study from the admin API, oldest first, and folds
the sites' block requests with the council's decisions on them through the same function the
coordinator's release gate uses (:func:`medfed.governance.release.release_blocks`), so the page
says exactly what a download would be told.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from medfed.errors import MedfedError
from medfed.governance.council import Outcome
from medfed.governance.release import AuditResult, BlockProposal, release_blocks
from medfed.protocol.v1 import medfed_pb2 as pb

ATTACKS = (("loss", "loss"), ("lira", "LiRA"), ("calibrated", "calibrated loss"))
"""(metric prefix, label) of each attack a site may report, in the order the tables show them."""
BLOCK_STATES = {
    "requested": "blocked: requested, not decided",
    "kept": "blocked: the council kept the block",
    "overruled": "released: the council overruled the block",
    "withdrawn": "released: the hospital withdrew its request",
}


def audit_view(
    study_id: str,
    audits: Sequence[pb.StudyStatus],
    governance_json: str | None = None,
) -> dict[str, Any]:
    """The section's document. ``audits``: the study's audit studies, oldest first;
    ``governance_json``: the coordinator's governance state (None: not known, e.g. no ledger)."""
    council, proposals = _proposals(study_id, governance_json)
    completed = [a for a in audits if a.state == "completed" and a.rounds]
    results = [AuditResult(a.study_id, _site_metrics(a)) for a in completed]
    blocks = release_blocks(results, proposals)
    return {
        "run": bool(audits),
        "attacks": [{"key": k, "label": label} for k, label in ATTACKS],
        "audits": [_audit(a) for a in audits],
        "council": council,
        "release": {
            "blocked": any(b.holds for b in blocks),
            "blocks": [asdict(b) | {"describe": BLOCK_STATES[b.status]} for b in blocks],
        },
    }


def fetch_audit_view(
    study_id: str,
    studies: Callable[[], Iterable[pb.StudyStatus]],
    status: Callable[[str], pb.StudyStatus],
    governance_json: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """``audit_view`` over the admin API: the listing finds the audits, each one's status holds
    its numbers; a coordinator that keeps no ledger has no governance state to read."""
    ids = [s.study_id for s in studies() if s.spec.audit_of == study_id]
    audits = [status(i) for i in ids]
    state = None
    if governance_json is not None:
        try:
            state = governance_json()
        except MedfedError:
            state = None
    return audit_view(study_id, audits, state)


def _audit(status: pb.StudyStatus) -> dict[str, Any]:
    sites = []
    for site, m in sorted(_site_metrics(status).items()):
        row: dict[str, Any] = {
            "site": site,
            "members": int(m.get("members", 0)),
            "non_members": int(m.get("non_members", 0)),
            "reference_models": int(m.get("reference_models", 0)),
            "auc_threshold": m.get("auc_threshold", 0.0),
            "block_release": m.get("block_release", 0.0) == 1.0,
        }
        for key, _ in ATTACKS:
            row[f"{key}_auc"] = m.get(f"{key}_auc")
            row[f"{key}_tpr_at_low_fpr"] = m.get(f"{key}_tpr_at_low_fpr")
        sites.append(row)
    rates = {m["low_fpr"] for m in _site_metrics(status).values() if "low_fpr" in m}
    return {
        "audit_id": status.study_id,
        "state": status.state,
        "message": status.message,
        "committed_unix_ms": status.rounds[0].committed_unix_ms if status.rounds else 0,
        "low_fpr": max(rates, default=0.01),
        "sites": sites,
        "refusals": [{"site": r.node, "code": r.code, "reason": r.reason} for r in status.refusals],
    }


def _site_metrics(status: pb.StudyStatus) -> dict[str, Mapping[str, float]]:
    return {m.node: dict(m.metrics) for r in status.rounds[:1] for m in r.per_node}


def _proposals(
    study_id: str, governance_json: str | None
) -> tuple[bool | None, list[BlockProposal]]:
    """(whether the consortium has a council, None if unknown; its block_release proposals)."""
    if governance_json is None:
        return None, []
    try:
        state = json.loads(governance_json)
        found = [
            BlockProposal(int(p["id"]), str(p["proposer"]), Outcome(p["outcome"]))
            for p in state.get("proposals", [])
            if p.get("kind") == "block_release" and p.get("study_id") == study_id
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, []
    return state.get("council") is not None, found
