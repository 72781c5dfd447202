"""The consortium's members as the ledger shows them: certificates, revocations, and each
hospital's record over every study (rounds accepted and rejected, reputation over all committed
rounds in ledger order, reward points earned). Computed from entries alone, so anyone holding an
export gets the same table as the coordinator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medfed.governance.reasons import reason_code
from medfed.governance.reputation import SiteRound, reputations
from medfed.ledger import kinds
from medfed.ledger.entry import Entry


@dataclass(frozen=True)
class Member:
    name: str
    role: str
    joined_ms: int
    certificate_sha256: str
    revoked: bool
    rounds_accepted: int
    rounds_rejected: int
    reputation: float | None
    """None: never selected for a round yet."""
    reward_points: int


def members(entries: Iterable[Entry]) -> list[Member]:
    joined: dict[str, Entry] = {}
    revoked: set[str] = set()
    rounds: list[SiteRound] = []
    points: dict[str, int] = {}
    number = 0
    for entry in entries:
        p = entry.payload
        if entry.kind == kinds.MEMBER_JOINED:
            joined.setdefault(str(p["name"]), entry)
        elif entry.kind == kinds.MEMBER_REVOKED:
            revoked.add(str(p["name"]))
        elif entry.kind == kinds.ROUND_COMMITTED:
            number += 1  # every study's rounds, one after the other, in ledger order
            rounds.extend(_site_rounds(number, p))
        elif entry.kind == kinds.REPUTATION:
            for site, record in dict(p.get("sites", {})).items():
                points[site] = points.get(site, 0) + int(record.get("reward_points", 0))
    scores = reputations(rounds)
    out = []
    for name, entry in sorted(joined.items()):
        score = scores.get(name)
        out.append(
            Member(
                name=name, role=str(entry.payload["role"]), joined_ms=entry.time_ms,
                certificate_sha256=str(entry.payload["sha256"]), revoked=name in revoked,
                rounds_accepted=score.accepted if score else 0,
                rounds_rejected=score.rejected if score else 0,
                reputation=score.score if score else None, reward_points=points.get(name, 0),
            )
        )  # fmt: skip
    return out


def _site_rounds(number: int, payload: Mapping[str, Any]) -> list[SiteRound]:
    accepted = {str(u["node"]) for u in _objects(payload.get("updates"))}
    rejected: dict[str, list[str]] = {}
    for r in _objects(payload.get("rejected")):
        rejected.setdefault(str(r["node"]), []).append(reason_code(str(r["reason"])))
    selected = {str(n) for n in payload.get("selected", []) or []}
    flags = {str(k): tuple(str(c) for c in v) for k, v in dict(payload.get("flags", {})).items()}
    return [
        SiteRound(site, number, participated=site in accepted or site in rejected,
                  accepted=site in accepted, rejected=tuple(rejected.get(site, ())),
                  flags=flags.get(site, ()) if site in accepted else ())
        for site in sorted(selected | accepted | set(rejected))
    ]  # fmt: skip


def _objects(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
