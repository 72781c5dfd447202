"""The protocols this hospital's data steward approved (``medfed node protocol approve HASH``).

Kept in the node's state folder, signed with the node's certificate key; the node agent sends
them with its heartbeats and the coordinator records each once in the ledger. A study whose spec
requires approval does not start at this hospital until its hash is here.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from medfed.ledger.approvals import approval_bytes, check_spec_sha256
from medfed.protocol.v1 import medfed_pb2 as pb

MAX_SENT = 256
"""Most approvals one heartbeat carries (the newest)."""


@dataclass(frozen=True)
class Approval:
    spec_sha256: str
    signature_hex: str
    approved_unix: float


class ProtocolApprovals:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "protocols.json"

    def approved(self) -> list[Approval]:
        if not self._path.exists():
            return []
        return [Approval(**a) for a in json.loads(self._path.read_text())["approved"]]

    def approve(
        self, spec_sha256: str, sign: Callable[[bytes], bytes], now: float | None = None
    ) -> Approval:
        signature = sign(approval_bytes(check_spec_sha256(spec_sha256)))
        entry = Approval(spec_sha256, signature.hex(), time.time() if now is None else now)
        kept = [a for a in self.approved() if a.spec_sha256 != spec_sha256]
        self._write([*kept, entry])
        return entry

    def messages(self) -> list[pb.ProtocolApproval]:
        newest = sorted(self.approved(), key=lambda a: a.approved_unix)[-MAX_SENT:]
        return [
            pb.ProtocolApproval(spec_sha256=a.spec_sha256, signature=bytes.fromhex(a.signature_hex))
            for a in newest
        ]

    def _write(self, approvals: list[Approval]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".protocols-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"approved": [asdict(a) for a in approvals]}, handle, indent=2)
        os.replace(tmp, self._path)
