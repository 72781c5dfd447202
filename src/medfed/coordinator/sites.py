"""Why a study is not progressing, hospital by hospital (pure functions, no clock, no I/O).

A study that waits must name the hospitals it waits for and say why each one is missing: a
researcher cannot act on "4 of at least 5 nodes online" when five are online and one of them lacks
the dataset. The coordinator knows three things about every hospital: what its heartbeats say
(online, which datasets it announces), whether the consortium CA revoked its certificate, and how
its last task of this study ended (accepted, or refused with the node's code and reason). One
status per hospital follows from them, the first of these that applies:

    revoked > offline > dataset not registered > its last task's refusal > ready
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class SiteStatus(StrEnum):
    """Stable values for ``--json`` readers; the CLI shows them with spaces."""

    READY = "ready"
    OFFLINE = "offline"
    REVOKED = "revoked"
    DATASET_NOT_REGISTERED = "dataset_not_registered"
    DATASET_UNAVAILABLE = "dataset_unavailable"
    SCHEMA_MISMATCH = "schema_mismatch"
    PLAN_NOT_APPROVED = "plan_not_approved"
    BUDGET_MISSING = "budget_missing"
    BUDGET_EXHAUSTED = "budget_exhausted"
    REFUSED = "refused"
    NO_REPLY = "no_reply"
    REJECTED = "rejected"


_BY_CODE = {
    "dataset_unavailable": SiteStatus.DATASET_UNAVAILABLE,
    "schema_mismatch": SiteStatus.SCHEMA_MISMATCH,
    "plan_not_approved": SiteStatus.PLAN_NOT_APPROVED,
    "plan_changed": SiteStatus.PLAN_NOT_APPROVED,
    "plan_hash_mismatch": SiteStatus.PLAN_NOT_APPROVED,
    "unknown_plan": SiteStatus.PLAN_NOT_APPROVED,
    "privacy_budget_missing": SiteStatus.BUDGET_MISSING,
    "privacy_budget_exhausted": SiteStatus.BUDGET_EXHAUSTED,
}
"""Node refusal codes (node/policy.py, node/executor.py, privacy/ledger.py) that have a status
of their own; any other code is plain ``refused`` with the node's reason."""

EVALUATION_PREFIX = "evaluation: "
"""Marks a rejection recorded in a round's evaluation rather than its training."""
_REFUSAL = re.compile(r"(?:evaluation: )?refused \(([^)]*)\): (.*)", re.DOTALL)
NO_REPLY_REASON = "no reply before the round deadline"


@dataclass(frozen=True)
class SiteView:
    """What the coordinator knows about one hospital now; ``last_seen_unix`` 0 = never seen."""

    name: str
    online: bool
    revoked: bool
    datasets: tuple[str, ...]
    last_seen_unix: float


@dataclass(frozen=True)
class SiteState:
    node: str
    status: SiteStatus
    reason: str
    last_seen_unix: float = 0.0


def refusal_reason(code: str, message: str) -> str:
    """How a node's refusal is recorded (``parse_refusal`` reads it back)."""
    return f"refused ({code}): {message}"


def parse_refusal(reason: str) -> tuple[str, str]:
    """(code, message) of a recorded node refusal; ("", reason) for a rejection the coordinator
    made itself (a bad update, a missed deadline)."""
    match = _REFUSAL.fullmatch(reason)
    return (match.group(1), match.group(2)) if match else ("", reason)


def outcome_status(reason: str) -> SiteStatus:
    """The status a hospital's last failed task gives it."""
    code, _ = parse_refusal(reason)
    if code:
        return _BY_CODE.get(code, SiteStatus.REFUSED)
    return SiteStatus.NO_REPLY if reason.startswith(NO_REPLY_REASON) else SiteStatus.REJECTED


def site_states(
    dataset: str, views: Sequence[SiteView], outcomes: Mapping[str, str]
) -> list[SiteState]:
    """Every hospital in ``views`` with its status, sorted by name. ``outcomes`` maps a hospital
    to the reason its last task of this study failed (absent: accepted, or none sent yet)."""
    return [_state(dataset, v, outcomes.get(v.name)) for v in sorted(views, key=lambda v: v.name)]


def _state(dataset: str, view: SiteView, outcome: str | None) -> SiteState:
    def state(status: SiteStatus, reason: str) -> SiteState:
        return SiteState(view.name, status, reason, view.last_seen_unix)

    if view.revoked:
        return state(SiteStatus.REVOKED, "its certificate was revoked by the consortium CA")
    if not view.online:
        if not view.last_seen_unix:
            return state(SiteStatus.OFFLINE, "never connected to this coordinator")
        return state(SiteStatus.OFFLINE, f"no heartbeat since {_utc(view.last_seen_unix)}")
    if dataset not in view.datasets:
        held = ", ".join(repr(d) for d in view.datasets) or "none"
        return state(
            SiteStatus.DATASET_NOT_REGISTERED,
            f"dataset {dataset!r} not registered (it announces {held})",
        )
    if outcome:
        return state(outcome_status(outcome), outcome)
    return state(SiteStatus.READY, f"online with dataset {dataset!r}")


def waiting_message(sites: Sequence[SiteState], eligible: Collection[str], min_nodes: int) -> str:
    """The study's message while it waits: how many hospitals can take part out of how many it
    needs, and every hospital that cannot, with the reason. Built from statuses and reasons
    that only change when the situation does, so a watcher sees a line per real change."""
    online = sum(s.status not in (SiteStatus.OFFLINE, SiteStatus.REVOKED) for s in sites)
    text = (
        f"waiting: {len(eligible)} of at least {min_nodes} hospitals can take part "
        f"({online} online)"
    )
    missing = [s for s in sites if s.node not in eligible]
    if missing:
        text += "; missing: " + "; ".join(f"{s.node} ({s.reason})" for s in missing)
    return text


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))
