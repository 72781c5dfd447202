"""Whether a study's model may be released, after its hospitals' privacy audits.

A hospital's data steward sets ``audit_auc_threshold`` in its node config; when a privacy audit
(``medfed study audit``, :mod:`medfed.node.audit`) measures a membership-inference attack AUC
above it, the site's reply asks that the model not be released (``block_release``). This module
folds a study's audits, in the order they were submitted, and the council's decisions on the
block proposals the coordinator opened for them, into each requesting site's block:

* the council voted the proposal through (PASSED): ``kept``, blocked for good;
* the council voted it down (REJECTED): ``overruled``, released; a later audit in which the same
  site asks again does not reopen it (one proposal per site and study: the council decided);
* no decision yet, or no council: the block holds (``requested``) until the hospital withdraws
  it: a later audit of the study in which that site answers without asking (its steward raised
  or cleared the threshold) marks it ``withdrawn``. Without a council nobody else can lift a
  hospital's block: there is no admin override, by design.

Pure functions over values; the coordinator (:mod:`medfed.coordinator.release`) and the study
report (:mod:`medfed.web.audit`) call the same fold, so both say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from medfed.governance.council import Outcome

BlockStatus = Literal["requested", "kept", "overruled", "withdrawn"]
HOLDING: frozenset[BlockStatus] = frozenset({"requested", "kept"})


@dataclass(frozen=True)
class AuditResult:
    """One completed audit of the study: each answering site's aggregate numbers."""

    audit_id: str
    sites: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class BlockProposal:
    """A council proposal to block the release, opened for ``site``'s request."""

    id: int
    site: str
    outcome: Outcome


@dataclass(frozen=True)
class SiteBlock:
    """A site's request to block the release, as it stands."""

    site: str
    audit_id: str
    """The latest audit in which the site asked."""
    auc: float
    """The highest attack AUC that audit measured at the site."""
    attack: str
    threshold: float
    status: BlockStatus
    proposal: int | None = None

    @property
    def holds(self) -> bool:
        return self.status in HOLDING


def highest_auc(metrics: Mapping[str, float]) -> tuple[str, float]:
    """(attack, AUC) of the attack that did best at a site."""
    aucs = {k.removesuffix("_auc"): v for k, v in metrics.items() if k.endswith("_auc")}
    if not aucs:
        return "", 0.0
    attack = max(sorted(aucs), key=lambda a: aucs[a])
    return attack, aucs[attack]


def asks_block(metrics: Mapping[str, float]) -> bool:
    return metrics.get("block_release", 0.0) == 1.0


def release_blocks(
    audits: Sequence[AuditResult], proposals: Iterable[BlockProposal] = ()
) -> list[SiteBlock]:
    """Every site that ever asked to block the release, with where its request stands (see
    the module docstring); sorted by site."""
    first_proposal: dict[str, BlockProposal] = {}
    for p in sorted(proposals, key=lambda p: p.id):
        first_proposal.setdefault(p.site, p)
    latest_ask: dict[str, tuple[str, Mapping[str, float]]] = {}
    withdrawn: dict[str, bool] = {}
    for audit in audits:
        for site, metrics in audit.sites.items():
            asked = asks_block(metrics)
            if asked:
                latest_ask[site] = (audit.audit_id, metrics)
            withdrawn[site] = not asked
    out = []
    for site in sorted(latest_ask):
        audit_id, metrics = latest_ask[site]
        attack, auc = highest_auc(metrics)
        proposal = first_proposal.get(site)
        status: BlockStatus = "withdrawn" if withdrawn[site] else "requested"
        if proposal is not None and proposal.outcome is Outcome.PASSED:
            status = "kept"
        elif proposal is not None and proposal.outcome is Outcome.REJECTED:
            status = "overruled"
        out.append(SiteBlock(site, audit_id, auc, attack, metrics.get("auc_threshold", 0.0),
                             status, proposal.id if proposal else None))  # fmt: skip
    return out


def refusal(study_id: str, blocks: Iterable[SiteBlock], council: bool) -> str | None:
    """Why the study's model may not be downloaded now, naming each blocking site and its AUC;
    None when nothing holds it."""
    holding = [b for b in blocks if b.holds]
    if not holding:
        return None
    parts = []
    for b in holding:
        said = (
            f"{b.site}'s privacy audit {b.audit_id} measured a membership-inference AUC of "
            f"{b.auc:.3f} ({b.attack} attack), above its threshold {b.threshold:.3f}"
        )
        if b.status == "kept":
            said += f"; the council kept the block (proposal {b.proposal} passed)"
        elif b.proposal is not None:
            said += (f"; the council decides on proposal {b.proposal} (voting it down releases "
                     "the model)")  # fmt: skip
        elif council:
            said += "; the council has no proposal for it yet"
        else:
            said += (f"; with no council it holds until {b.site} withdraws it (a later audit in "
                     "which it no longer asks)")  # fmt: skip
        parts.append(said)
    return f"the release of study {study_id}'s model is blocked: " + "; ".join(parts)
