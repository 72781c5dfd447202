"""The kinds of ledger entry, ``area.event``; what each payload holds is written beside it."""

from __future__ import annotations

GENESIS = "ledger.genesis"
"""The first entry: ``certificate`` (the coordinator's, PEM) and ``ca_sha256``."""
SIGNER = "ledger.signer"
"""A renewed coordinator certificate takes over signing from this entry: ``certificate``."""
MEMBER_JOINED = "member.joined"
"""A certificate first seen: ``name``, ``role``, ``serial`` (hex), ``certificate`` (PEM),
``sha256``."""
MEMBER_REVOKED = "member.revoked"
"""A member's certificate found on the CA's revocation list: ``name``, ``serial``."""
STUDY_SUBMITTED = "study.submitted"
"""``name``, ``spec_sha256``, ``model_sha256``, ``submitted_by``."""
STUDY_STARTED = "study.started"
STUDY_COMPLETED = "study.completed"
STUDY_FAILED = "study.failed"
STUDY_CANCELLED = "study.cancelled"
"""State changes of a study: ``message`` (and ``by`` for a cancellation)."""
ROUND_COMMITTED = "round.committed"
"""``round``, ``model_sha256``, ``state_sha256``, ``selected`` (nodes), ``updates`` (signed
proofs, :class:`medfed.ledger.updates.UpdateProof`), ``rejected`` (node, reason), ``privacy``
(per site: what the round's reply reported spending), ``consent`` (per site: consented N and
watermark, where the data layer reports them)."""
PROTOCOL_APPROVED = "protocol.approved"
"""A hospital's data steward approved a study protocol: ``node``, ``spec_sha256``, ``signature``."""

GOVERNANCE_COUNCIL = "governance.council"
"""The council, once, from the coordinator's config: ``members`` (admin identities),
``threshold``."""
GOVERNANCE_PROPOSED = "governance.proposed"
GOVERNANCE_VOTED = "governance.voted"
"""A council member's proposal or vote: ``event`` (canonical JSON of
:mod:`medfed.governance.council`) and ``signature`` (hex, by their admin certificate key;
:mod:`medfed.ledger.governance`); a proposal entry also carries its ``id``."""
RELEASE_BLOCK_REQUESTED = "release.block_requested"
"""A hospital's privacy audit asked that the study's model not be released: ``site``, ``audit``
(the audit's study id), ``attack``, ``auc``, ``auc_threshold``, ``proposal`` (the council's
block_release proposal, or null without a council; :mod:`medfed.governance.release`)."""
RELEASE_BLOCK_WITHDRAWN = "release.block_withdrawn"
"""A later audit in which that hospital no longer asks: ``site``, ``audit``."""
CONTRIBUTION = "governance.contribution"
"""One round's contribution estimate over the network
(:mod:`medfed.coordinator.round_contributions`): ``round``, ``method``, ``metric``,
``evaluators``, ``evaluations``, ``before``/``after`` (utilities of the round's starting and
committed models) and ``values`` per site, or ``error``."""
REPUTATION = "governance.reputation"
"""A finished study's per-site contributions, reputation and rewards (:mod:`medfed.governance`)."""

STUDY_STATES = {
    "running": STUDY_STARTED,
    "completed": STUDY_COMPLETED,
    "failed": STUDY_FAILED,
    "cancelled": STUDY_CANCELLED,
}
"""Study states whose first arrival is recorded (``running`` is recorded once, as started)."""
