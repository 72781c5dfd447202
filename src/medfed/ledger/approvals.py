"""A data steward's approval of a study protocol, signed with the hospital node's certificate key.

The steward approves the SHA-256 of the study spec (the protocol appendix of the Data Use
Agreement prints it: ``medfed study protocol``); the signature travels to the coordinator, which
records it in the ledger, so anyone with the CA certificate can check which hospitals agreed to
exactly which protocol. A changed spec has another hash and needs approving again.
"""

from __future__ import annotations

import re

from medfed.errors import LedgerError
from medfed.ledger.keys import TrustedCertificate

APPROVAL_PURPOSE = b"medfed/protocol-approval/v1\n"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_spec_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise LedgerError(f"{value!r} is not a study protocol hash (64 lowercase hex digits)")
    return value


def approval_bytes(spec_sha256: str) -> bytes:
    return APPROVAL_PURPOSE + check_spec_sha256(spec_sha256).encode("ascii")


def check_approval(spec_sha256: str, signature: bytes, node: TrustedCertificate) -> None:
    if not node.verify(signature, approval_bytes(spec_sha256)):
        raise LedgerError(
            f"the approval of protocol {spec_sha256[:12]}… is not signed by {node.name!r}'s key"
        )
