"""The coordinator's release gate: a model a hospital's audit asked to block is not handed out.

When an audit commits (:mod:`medfed.coordinator.audit`), ``audit_recorded`` writes each site's
request to the ledger (``release.block_requested``, or ``release.block_withdrawn`` when a site
that asked before answers without asking) and, if the consortium has a council, opens the
council's ``block_release`` proposal for it (:meth:`GovernanceKeeper.open_release_block`).
``refusal`` is what ``DownloadModel`` asks before it streams a model: the fold of
:mod:`medfed.governance.release` over the study's audits and the council's decisions, so a model
stays withheld while a block is requested and not overruled, and is released the moment the
council votes the proposal down. The rule without a council is in that module's docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from medfed.coordinator.governance import GovernanceKeeper
from medfed.coordinator.spec import StudySpec
from medfed.errors import StoreError
from medfed.governance.release import (
    AuditResult,
    BlockProposal,
    SiteBlock,
    asks_block,
    highest_auc,
    refusal,
    release_blocks,
)
from medfed.ledger import kinds
from medfed.store.state import StateStore, StudyRecord

log = logging.getLogger("medfed.coordinator")


class ReleaseGate:
    def __init__(
        self, state: StateStore, governance: GovernanceKeeper | None, wall: Callable[[], float]
    ) -> None:
        self._state = state
        self._governance = governance
        self._wall = wall

    def audit_recorded(self, audit_id: str) -> None:
        """Record the committed audit's block requests and withdrawals and open the council's
        proposals (each once: a restarted coordinator calling it again changes nothing)."""
        record = self._state.study(audit_id)
        study_id = StudySpec.from_json(record.spec_json).audit_of
        audits = self._audits(study_id)
        this = next((a for a in audits if a.audit_id == audit_id), None)
        if this is None or self._already_recorded(audit_id):
            return
        before = {b.site: b for b in release_blocks([a for a in audits if a is not this])}
        proposed = {p.site for p in self._proposals(study_id)}
        for site, metrics in sorted(this.sites.items()):
            if asks_block(metrics):
                self._requested(study_id, audit_id, site, metrics, site in proposed)
            elif site in before and before[site].status == "requested":
                self._ledger(kinds.RELEASE_BLOCK_WITHDRAWN, study_id,
                             {"site": site, "audit": audit_id})  # fmt: skip

    def blocks(self, study_id: str) -> list[SiteBlock]:
        """Each site's block request on ``study_id`` and where it stands."""
        return release_blocks(self._audits(study_id), self._proposals(study_id))

    def refusal(self, model_sha256: str) -> str | None:
        """Why this model may not be downloaded (the final model of a study whose release a
        hospital's block holds), naming the site and its AUC; None when it may."""
        council = self._governance is not None and self._governance.has_council
        for study in self._released_as(model_sha256):
            why = refusal(study.study_id, self.blocks(study.study_id), council)
            if why is not None:
                return why
        return None

    def _requested(self, study_id: str, audit_id: str, site: str, metrics: Mapping[str, float],
                   proposed: bool) -> None:  # fmt: skip
        attack, auc = highest_auc(metrics)
        threshold = metrics.get("auc_threshold", 0.0)
        payload = {"site": site, "audit": audit_id, "attack": attack, "auc": auc,
                   "auc_threshold": threshold, "proposal": None}  # fmt: skip
        if not proposed and self._governance is not None:
            reason = (f"{site}'s privacy audit {audit_id} measured a membership-inference AUC "
                      f"of {auc:.3f} ({attack} attack), above its threshold {threshold:.3f}; yes "
                      "keeps the model unreleased, no releases it")  # fmt: skip
            payload["proposal"] = self._governance.open_release_block(
                site, study_id, reason, self._wall()
            )
        self._ledger(kinds.RELEASE_BLOCK_REQUESTED, study_id, payload)
        log.warning("study %s: %s asks that its model not be released (AUC %.3f > %.3f)",
                    study_id, site, auc, threshold)  # fmt: skip

    def _already_recorded(self, audit_id: str) -> bool:
        """A coordinator restarted after recording this audit's requests finds them there."""
        if self._governance is None:
            return False
        wanted = (kinds.RELEASE_BLOCK_REQUESTED, kinds.RELEASE_BLOCK_WITHDRAWN)
        entries = self._state.ledger_entries_of(wanted)
        return any(e.payload.get("audit") == audit_id for e in entries)

    def _ledger(self, kind: str, study_id: str, payload: dict[str, object]) -> None:
        if self._governance is not None:  # a coordinator keeps governance iff it keeps a ledger
            self._state.append_ledger(kind, study_id, payload, self._wall())

    def _proposals(self, study_id: str) -> list[BlockProposal]:
        return [] if self._governance is None else self._governance.release_proposals(study_id)

    def _audits(self, study_id: str) -> list[AuditResult]:
        """The study's completed audits, oldest first, each site's numbers."""
        out = []
        for record in self._state.studies():
            if record.state != "completed":
                continue
            if StudySpec.from_json(record.spec_json).audit_of != study_id:
                continue
            try:
                rounds = self._state.rounds(record.study_id)
            except StoreError:
                continue
            sites = {m.node: dict(m.metrics) for r in rounds[:1] for m in r.per_node}
            out.append(AuditResult(record.study_id, sites))
        return out

    def _released_as(self, model_sha256: str) -> list[StudyRecord]:
        """The studies (not audits) whose final model this is."""
        return [
            r
            for r in self._state.studies()
            if r.model_sha256 == model_sha256
            and r.state == "completed"
            and not StudySpec.from_json(r.spec_json).audit_of
        ]
