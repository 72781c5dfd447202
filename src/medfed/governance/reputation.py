"""A site's reputation: an exponentially weighted score in [0, 1] over its rounds, from a prior.

Evidence per round (``SiteRound``, one per site the round concerned), scored ``s`` in [0, 1]:

* absent (not selected, offline, no reply): ``s = 0.5``: no evidence either way, but not a
  contribution either, so a long absence drifts a good score back toward the prior;
* a rejected reply: ``s = 0.5 * (1 - severity)``, the worst of its reason codes (``SEVERITY``):
  a refusal under the site's own policy weighs 0 (the steward may refuse), a late reply 0.25,
  a malformed one 0.75, a NaN, a replay or an invalid signature 1 (broken or dishonest);
* an accepted reply: ``s = (1 - flag severity) * (0.5 + 0.5 * c)``, where ``c`` in [-1, 1] is
  its contribution normalized within the round (its Shapley value over the largest magnitude of
  any site's that round: an update that made the model worse counts against the site, one that
  changed nothing is neutral) and the flags are a robust aggregator's evidence against it (a Krum
  outlier 0.5, a clipped norm 0.25). Without a contribution estimate (secure aggregation hides
  single updates) ``c`` is taken as 0.5 for everyone: participation is then all that counts.

``R_0 = PRIOR = 0.5`` and ``R_r = (1 - λ) R_{r-1} + λ s_r`` with ``λ = 0.2``: the last ~5 rounds
carry most of the weight (half-life ln 2 / -ln 0.8 ≈ 3.1 rounds), so a site recovers by behaving
well and a good history does not buy a free attack. The exponentially weighted average of
evidence with a neutral prior is the beta-reputation family's simplest member (Jøsang & Ismail,
"The Beta Reputation System", 2002, with forgetting factor); it stays in [0, 1] by construction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from medfed.errors import ConfigError

PRIOR = 0.5
LEARNING_RATE = 0.2
ABSENT = 0.5
UNKNOWN_CONTRIBUTION = 0.5

SEVERITY: Mapping[str, float] = MappingProxyType(
    {
        "refused": 0.0,
        "late": 0.25,
        "too_large": 0.75,
        "malformed": 0.75,
        "wrong_shape": 0.75,
        "wrong_dtype": 0.75,
        "non_finite": 1.0,
        "replay": 1.0,
        "wrong_round": 1.0,
        "invalid_signature": 1.0,
        "krum_outlier": 0.5,
        "norm_clipped": 0.25,
    }
)
"""Reason codes (rejections) and flags (a robust aggregator's) -> how bad, in [0, 1]."""
UNKNOWN_SEVERITY = 0.5
"""A code this table does not know: counted, at middling weight, rather than ignored."""


@dataclass(frozen=True)
class SiteRound:
    """What the ledger records about one site in one round."""

    site: str
    round: int
    participated: bool
    """The site replied (accepted or rejected); False: not selected, offline or no reply."""
    accepted: bool = False
    rejected: tuple[str, ...] = ()
    """Reason codes of its rejected replies this round."""
    flags: tuple[str, ...] = ()
    """A robust aggregator's evidence against its accepted update (``krum_outlier``, ...)."""
    contribution: float | None = None
    """Its contribution estimate (Shapley value) this round; None: none could be computed."""

    def __post_init__(self) -> None:
        if self.accepted and not self.participated:
            raise ConfigError(f"site {self.site!r} round {self.round}: accepted but absent")


@dataclass(frozen=True)
class Reputation:
    site: str
    score: float
    rounds: int
    participation: float
    """Fraction of its recorded rounds in which it replied."""
    accepted: int
    rejected: int
    flagged: int
    contribution: float
    """Sum of its contribution estimates over the rounds that had one."""


def severity(code: str) -> float:
    return SEVERITY.get(code, UNKNOWN_SEVERITY)


def reputations(records: Iterable[SiteRound]) -> dict[str, Reputation]:
    """Every site's reputation from its rounds (taken in round order), by the module's formula."""
    by_round: dict[int, list[SiteRound]] = defaultdict(list)
    for record in records:
        by_round[record.round].append(record)
    scores: dict[str, float] = {}
    history: dict[str, list[SiteRound]] = defaultdict(list)
    for number in sorted(by_round):
        records_now = by_round[number]
        sites = [r.site for r in records_now]
        if len(set(sites)) != len(sites):
            raise ConfigError(f"round {number} records a site twice: {sorted(sites)}")
        normalized = _normalized(records_now)
        for record in records_now:
            s = round_score(record, normalized.get(record.site))
            previous = scores.get(record.site, PRIOR)
            scores[record.site] = (1 - LEARNING_RATE) * previous + LEARNING_RATE * s
            history[record.site].append(record)
    return {site: _summary(site, scores[site], history[site]) for site in sorted(scores)}


def round_score(record: SiteRound, contribution: float | None) -> float:
    """The evidence ``s`` of one round in [0, 1]; ``contribution`` is already normalized."""
    if not record.participated:
        return ABSENT
    if not record.accepted:
        worst = max((severity(c) for c in record.rejected), default=UNKNOWN_SEVERITY)
        return 0.5 * (1 - worst)
    flagged = max((severity(f) for f in record.flags), default=0.0)
    c = UNKNOWN_CONTRIBUTION if contribution is None else contribution
    return (1 - flagged) * (0.5 + 0.5 * c)


def _normalized(records: list[SiteRound]) -> Mapping[str, float]:
    """Accepted sites' contributions over the round's largest magnitude, in [-1, 1]."""
    known = {r.site: r.contribution for r in records if r.accepted and r.contribution is not None}
    for site, value in known.items():
        if not math.isfinite(value):
            raise ConfigError(f"site {site!r} has a non-finite contribution {value}")
    top = max((abs(c) for c in known.values()), default=0.0)
    return {site: (c / top if top > 0 else 0.0) for site, c in known.items()}


def _summary(site: str, score: float, rounds: list[SiteRound]) -> Reputation:
    replied = sum(r.participated for r in rounds)
    return Reputation(
        site=site,
        score=score,
        rounds=len(rounds),
        participation=replied / len(rounds),
        accepted=sum(r.accepted for r in rounds),
        rejected=sum(r.participated and not r.accepted for r in rounds),
        flagged=sum(bool(r.flags) for r in rounds),
        contribution=sum(r.contribution for r in rounds if r.contribution is not None),
    )


def penalty_candidates(found: Mapping[str, Reputation], below: float = 0.3) -> list[str]:
    """Sites whose reputation fell under ``below``: what a council member may propose to
    suspend (a proposal, never an automatic sanction)."""
    return sorted(site for site, r in found.items() if r.score < below)
