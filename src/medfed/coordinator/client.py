"""The researcher's / admin's client for the coordinator's AdminService."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from medfed.coordinator.spec import StudySpec, spec_to_proto
from medfed.errors import TransportError
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.transport.errors import rpc_errors
from medfed.transport.grpc_factory import connect
from medfed.transport.methods import model_download
from medfed.transport.tls import TlsFiles

if TYPE_CHECKING:  # numpy loads only for uploads and downloads: `study status` stays fast
    from medfed.protocol import tensors

MAX_PAGES = 10_000
"""A listing longer than this is a server bug (a token that never ends), not a consortium."""


class AdminClient:
    def __init__(
        self,
        target: str = "",
        tls: TlsFiles | None = None,
        server_name: str = "",
        *,
        channel: Any = None,
    ) -> None:
        self._channel = channel or connect(target, tls, server_name)
        self._stub = rpc.AdminServiceStub(self._channel)
        self._download = model_download(self._channel, "AdminService", "DownloadModel")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        spec: StudySpec,
        initial: tensors.Weights,
        timeout_s: float = 120.0,
        he_public_context: bytes = b"",
    ) -> str:
        """Submit a study; ``he_public_context`` (the researcher's CKKS public key) makes every
        site send its evaluation metrics encrypted to the researcher."""
        from medfed.protocol import tensors

        manifest, chunks = tensors.encode_model(initial)

        def messages() -> Iterator[pb.SubmitStudyChunk]:
            yield pb.SubmitStudyChunk(spec=spec_to_proto(spec))
            if he_public_context:
                yield pb.SubmitStudyChunk(he_public_context=he_public_context)
            yield pb.SubmitStudyChunk(manifest=manifest)
            for data in chunks:
                yield pb.SubmitStudyChunk(data=bytes(data))

        with rpc_errors("submit study"):
            ref: pb.StudyRef = self._stub.SubmitStudy(messages(), timeout=timeout_s)
        return ref.study_id

    def status(self, study_id: str, timeout_s: float = 30.0) -> pb.StudyStatus:
        with rpc_errors("get study"):
            status: pb.StudyStatus = self._stub.GetStudy(
                pb.StudyRef(study_id=study_id), timeout=timeout_s
            )
        return status

    def watch(self, study_id: str, timeout_s: float | None = None) -> Iterator[pb.StudyStatus]:
        with rpc_errors("watch study"):
            yield from self._stub.WatchStudy(pb.StudyRef(study_id=study_id), timeout=timeout_s)

    def cancel(self, study_id: str, reason: str = "", timeout_s: float = 30.0) -> pb.StudyStatus:
        """Cancel a study (recorded with this certificate's name); returns its final status."""
        with rpc_errors("cancel study"):
            status: pb.StudyStatus = self._stub.CancelStudy(
                pb.CancelStudyRequest(study_id=study_id, reason=reason), timeout=timeout_s
            )
        return status

    def studies(self, page_size: int = 0) -> list[pb.StudyStatus]:
        """Every study, newest first, fetched page by page (``page_size`` 0: the server's)."""
        pages = _pages(self._stub.ListStudies, page_size, "list studies")
        return [study for reply in pages for study in reply.studies]

    def nodes(self, page_size: int = 0) -> list[pb.NodeInfo]:
        """Every node the coordinator has heard from, by name, fetched page by page."""
        pages = _pages(self._stub.ListNodes, page_size, "list nodes")
        return [node for reply in pages for node in reply.nodes]

    def govern(
        self, event_json: bytes = b"", signature: bytes = b"", timeout_s: float = 30.0
    ) -> pb.GovernReply:
        """Record a signed proposal or vote (medfed.governance); empty: just read the state."""
        with rpc_errors("governance"):
            reply: pb.GovernReply = self._stub.Govern(
                pb.GovernRequest(event_json=event_json, signature=signature), timeout=timeout_s
            )
        return reply

    def ledger_head(self, timeout_s: float = 30.0) -> str | None:
        """The coordinator's ledger head as ``height:hash`` (None: it keeps no ledger)."""
        with rpc_errors("read the ledger head"):
            try:
                page: pb.LedgerPage = self._stub.GetLedger(
                    pb.LedgerRequest(start=1 << 62), timeout=timeout_s
                )
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return None
                raise
        return f"{page.head.seq}:{page.head.hash}" if page.HasField("head") else None

    def ledger(self, study_id: str = "", start: int = 0, timeout_s: float = 60.0) -> list[bytes]:
        """The coordinator's ledger entries (JSON lines, as signed) from height ``start`` on, or
        only one study's; every page, in order."""
        lines: list[bytes] = []
        for _ in range(MAX_PAGES):
            with rpc_errors("read the ledger"):
                page: pb.LedgerPage = self._stub.GetLedger(
                    pb.LedgerRequest(start=start, study_id=study_id), timeout=timeout_s
                )
            if not page.entries:
                return lines
            lines.extend(bytes(e) for e in page.entries)
            start = json.loads(lines[-1])["seq"] + 1
        raise TransportError("the coordinator's ledger did not end after 10,000 pages")

    def download(self, sha256: str, timeout_s: float = 300.0) -> tensors.Weights:
        from medfed.protocol.streams import receive_model

        with rpc_errors("download model"):
            stream = self._download(pb.FetchModelRequest(sha256=sha256), timeout=timeout_s)
            return receive_model(iter(stream), sha256)


def _pages(call: Callable[..., Any], page_size: int, what: str) -> list[Any]:
    """Every page of a listing: each reply's ``next_page_token`` asks for the next."""
    replies: list[Any] = []
    token = ""
    with rpc_errors(what):
        for _ in range(MAX_PAGES):
            reply = call(pb.PageRequest(page_size=page_size, page_token=token), timeout=30.0)
            replies.append(reply)
            token = reply.next_page_token
            if not token:
                return replies
    raise TransportError(f"{what}: more than {MAX_PAGES} pages")


def wait_for_ready(client: AdminClient, timeout_s: float) -> None:
    """Block until the coordinator answers, or raise TransportError."""
    try:
        grpc.channel_ready_future(client._channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as exc:
        raise TransportError(f"coordinator not reachable within {timeout_s:.0f} s") from exc
