"""The reputation code of a recorded rejection reason (the ledger keeps the reason's words).

A refusal under the hospital's own policy is recorded as ``refused (CODE): message`` and counts
as ``refused`` (no penalty: a steward may refuse); the coordinator's own rejections are classified
by what they say, and anything unrecognized counts as ``malformed``.
"""

from __future__ import annotations

import re

_REFUSAL = re.compile(r"(?:evaluation: )?refused \(([^)]*)\): ", re.DOTALL)
_NO_REPLY = "no reply before the round deadline"
_CODES: tuple[tuple[str, str], ...] = (
    ("signature:", "invalid_signature"),
    ("nan", "non_finite"),
    ("infinit", "non_finite"),
    ("duplicate", "replay"),
    ("names study", "wrong_round"),
    (_NO_REPLY, "late"),
    ("stale", "late"),
    ("closed", "late"),
    ("expired", "late"),
    ("deadline", "late"),
    ("expected float", "wrong_shape"),
    ("expected ", "wrong_shape"),
    ("too large", "too_large"),
    ("at most", "too_large"),
)


def reason_code(reason: str) -> str:
    if _REFUSAL.match(reason):
        return "refused"
    text = reason.lower()
    return next((code for marker, code in _CODES if marker in text), "malformed")
