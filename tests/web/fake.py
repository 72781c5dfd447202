"""An admin source answering from memory, as AdminClient would (same calls, same errors)."""

from __future__ import annotations

from typing import Any

from medfed.errors import TransportError
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.web.sample import HOSPITALS, sample_status


class FakeAdmin:
    def __init__(self, status: pb.StudyStatus | None = None) -> None:
        self.current = status or sample_status()
        self.calls = 0

    def status(self, study_id: str, timeout_s: float = 30.0) -> pb.StudyStatus:
        self.calls += 1
        if study_id != self.current.study_id:
            raise TransportError(
                f"get study: NOT_FOUND: study {study_id!r} is not known to this coordinator"
            )
        return self.current

    def studies(self, page_size: int = 0) -> list[pb.StudyStatus]:
        return [self.current]

    def nodes(self, page_size: int = 0) -> list[pb.NodeInfo]:
        return [
            pb.NodeInfo(name=n, online=True, last_seen_unix_ms=1, datasets=["heart_disease"])
            for n in HOSPITALS
        ] + [pb.NodeInfo(name="switzerland", revoked=True)]

    def download(self, sha256: str, timeout_s: float = 300.0) -> Any:
        raise TransportError("download model: UNAVAILABLE: not in this fake")
