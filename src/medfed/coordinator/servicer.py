"""gRPC glue: authenticate the caller by certificate and role, then call into the engine."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import grpc

from medfed.coordinator import uploads
from medfed.coordinator.audit import audited_model
from medfed.coordinator.directory import NodeDirectory, announced_sizes
from medfed.coordinator.encrypted_eval import store_context
from medfed.coordinator.engine import Engine, StudyEvents
from medfed.coordinator.governance import GovernanceKeeper
from medfed.coordinator.ledger import LedgerKeeper
from medfed.coordinator.listing import page
from medfed.coordinator.models import ServedModels
from medfed.coordinator.progress import StudyProgress
from medfed.coordinator.release import ReleaseGate
from medfed.coordinator.rounds import OpenRound, Rejected, TaskBoard, TaskStatus
from medfed.coordinator.sites import parse_refusal, refusal_reason
from medfed.coordinator.spec import StudySpec, spec_to_proto
from medfed.coordinator.staging import StagingPool
from medfed.coordinator.stats_result import resolve_standardization
from medfed.coordinator.submission import read_submission
from medfed.errors import GovernanceError, LedgerError, MedfedError, ProtocolError, StoreError
from medfed.pki.identity import Role
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.records import EncryptedEval
from medfed.store.state import FINISHED_STATES, RoundRecord, StateStore, StudyRecord
from medfed.transport.auth import PeerAuthorizer, abort
from medfed.transport.watchdog import WatchedRequests

log = logging.getLogger("medfed.coordinator")

MAX_PULL_WAIT_S = 30.0
MAX_REFUSAL_CHARS = 8000
"""Long enough for a schema difference over hundreds of columns, which must arrive whole."""


class NodeServicer:
    def __init__(
        self,
        auth: PeerAuthorizer,
        board: TaskBoard,
        directory: NodeDirectory,
        state: StateStore,
        models: ServedModels,
        heartbeat_interval_s: int,
        upload_buffers: int = 2,
        ledger: LedgerKeeper | None = None,
    ) -> None:
        self._ledger = ledger
        self._auth = auth
        self._board = board
        self._directory = directory
        self._state = state
        self._models = models
        self._staging = StagingPool(upload_buffers)
        self._heartbeat_s = heartbeat_interval_s

    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatReply:
        me = self._auth.require(context, Role.NODE)
        try:
            sizes = announced_sizes(request)
        except ProtocolError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        now = time.time()
        fresh = self._directory.seen(
            me.name, list(request.datasets), wall=now, serial=me.serial, sizes=sizes,
            agent_version=request.agent_version, cert_not_after=me.not_after_unix,
        )  # fmt: skip
        self._state.node_seen(me.name, list(request.datasets), now=now)
        for dataset, size in fresh.items():
            before = self._state.record_sizes(
                me.name, dataset, size.train_rows, size.test_rows, now=now
            )
            if before is not None:
                log.warning(
                    "node %s changed its announced size of dataset %r: %d train / %d test rows "
                    "-> %s", me.name, dataset, *before, size.describe(),
                )  # fmt: skip
        reply = pb.HeartbeatReply(
            node=me.name,
            server_time_unix_ms=int(now * 1000),
            heartbeat_interval_s=self._heartbeat_s,
        )
        if self._ledger is not None:
            pem = self._auth.certificate(context)
            self._ledger.member(me, pem)
            self._ledger.approvals(me, pem, request.approvals)
            verified = request.verified_head if request.HasField("verified_head") else None
            reply.peer_heads.extend(self._ledger.gossip(me.name, verified))
            head = self._ledger.head()
            if head is not None:
                reply.ledger_head.CopyFrom(head)
        return reply

    def PullTask(
        self, request: pb.PullTaskRequest, context: grpc.ServicerContext
    ) -> pb.PullTaskReply:
        me = self._auth.require(context, Role.NODE)
        self._directory.seen(me.name)
        revoked = threading.Event()

        def keep_waiting() -> bool:
            if self._auth.is_revoked(me):
                revoked.set()
                return False
            return bool(context.is_active())

        wait_s = min(request.wait_ms / 1000.0, MAX_PULL_WAIT_S)
        task = self._board.pull(me.name, wait_s, keep_waiting)
        if revoked.is_set():
            abort(
                context, grpc.StatusCode.UNAUTHENTICATED, f"certificate of {me.name!r} was revoked"
            )
        self._directory.seen(me.name)
        if task is None:
            return pb.PullTaskReply(has_task=False)
        reply = pb.PullTaskReply(task=task, has_task=True)
        head = self._ledger.head() if self._ledger is not None else None
        if head is not None:  # the newest head: the node verifies up to it before it trains
            reply.task.ledger_head.CopyFrom(head)
        return reply

    def FetchModel(
        self, request: pb.FetchModelRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        me = self._auth.require(context, Role.NODE)
        if not self._board.may_fetch(me.name, request.sha256):
            abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"model {request.sha256[:16]}… was not sent to {me.name!r} in any task",
            )
        yield from _model_stream(self._models, request.sha256, context)

    def SubmitUpdate(
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> pb.SubmitReply:
        me = self._auth.require(context, Role.NODE)
        attribute = None
        if self._ledger is not None:
            attribute = self._ledger.attribute(self._auth.certificate(context), me.name)
        reply = uploads.receive(
            request_iterator,
            me.name,
            self._board,
            self._staging,
            _until_closed(request_iterator),
            attribute,
        )
        if not reply.accepted:
            log.warning("update from %s rejected: %s", me.name, reply.reason)
        return reply

    def SubmitSecAgg(
        self, request: pb.SecAggAnswer, context: grpc.ServicerContext
    ) -> pb.SubmitReply:
        me = self._auth.require(context, Role.NODE)
        round_ = self._board.find(request.task_id)
        if round_ is None or round_.kind != pb.TASK_KIND_SECAGG:
            return pb.SubmitReply(accepted=False, reason=f"no open stage {request.task_id!r}")
        try:
            slot = round_.begin(request.task_id, me.name, round_.study_id, round_.round)
            round_.accept_secagg(slot, request)
        except Rejected as exc:
            return pb.SubmitReply(accepted=False, reason=str(exc))
        return pb.SubmitReply(accepted=True)

    def GetLedger(self, request: pb.LedgerRequest, context: grpc.ServicerContext) -> pb.LedgerPage:
        self._auth.require(context, Role.NODE)
        return _ledger_page(self._ledger, request, context, study=None)

    def RefuseTask(self, request: pb.TaskRefusal, context: grpc.ServicerContext) -> pb.Ack:
        me = self._auth.require(context, Role.NODE)
        round_ = self._board.find(request.task_id)
        slot = round_.slots.get(request.task_id) if round_ else None
        if round_ is None or slot is None or slot.node != me.name:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no open task {request.task_id!r} for {me.name!r}",
            )
        reason = refusal_reason(request.code[:64], request.message[:MAX_REFUSAL_CHARS])
        log.warning("node %s refused task of study %s: %s", me.name, round_.study_id, reason)
        round_.reject(slot, reason, TaskStatus.REFUSED)
        return pb.Ack()


def _ledger_page(
    ledger: LedgerKeeper | None,
    request: pb.LedgerRequest,
    context: grpc.ServicerContext,
    study: str | None,
) -> pb.LedgerPage:
    if ledger is None:
        abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this coordinator keeps no ledger")
    return ledger.page(request.start, request.limit, study)


def _until_closed(frames: Iterator[bytes]) -> Callable[[OpenRound], None]:
    """Binds an upload to its round once known: the watchdog cuts it (freeing its thread and
    staging buffer) as soon as the round closes, deadline passed or study cancelled."""

    def bind(round_: OpenRound) -> None:
        if isinstance(frames, WatchedRequests):
            frames.stop_when(lambda: f"round {round_.round} closed" if round_.closed else None)

    return bind


def _model_stream(models: ServedModels, sha: str, context: grpc.ServicerContext) -> Iterator[bytes]:
    try:
        chunks = models.frames(sha)
        first = next(chunks)
    except (StoreError, ProtocolError) as exc:
        abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
    yield first
    yield from chunks


class AdminServicer:
    def __init__(
        self,
        auth: PeerAuthorizer,
        state: StateStore,
        models: ServedModels,
        directory: NodeDirectory,
        engine: Engine,
        events: StudyEvents,
        progress: StudyProgress,
        ledger: LedgerKeeper | None = None,
        governance: GovernanceKeeper | None = None,
        release: ReleaseGate | None = None,
    ) -> None:
        self._ledger = ledger
        self._governance = governance
        self._release = release
        self._auth = auth
        self._state = state
        self._models = models
        self._directory = directory
        self._engine = engine
        self._events = events
        self._progress = progress

    def SubmitStudy(
        self, request_iterator: Iterator[pb.SubmitStudyChunk], context: grpc.ServicerContext
    ) -> pb.StudyRef:
        me = self._auth.require(context, Role.ADMIN)
        try:
            spec, weights, he_context = read_submission(request_iterator)
            weights = audited_model(spec, weights, self._state.study, self._models.get)
            spec = resolve_standardization(spec, self._state.study, self._models.get_private)
            he_sha = store_context(self._models, he_context) if he_context else ""
        except MedfedError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        spec = dataclasses.replace(spec, he_context_sha256=he_sha)  # never the client's word
        if self._governance is not None:
            try:
                self._governance.check_spec(spec)
            except GovernanceError as exc:
                abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"refused by the council's "
                      f"rules: {exc}")  # fmt: skip
        try:
            sha = self._models.put(weights)
        except MedfedError as exc:  # the model was checked: a failure here is the server's
            log.error("storing the initial model of %r failed: %s", spec.name, exc)
            abort(context, grpc.StatusCode.INTERNAL, f"cannot store the initial model: {exc}")
        study_id = "s-" + secrets.token_hex(6)
        if self._ledger is not None:
            self._ledger.member(me, self._auth.certificate(context))
        self._state.create_study(
            study_id, spec.name, spec.to_json(), sha, now=time.time(), by=me.name,
            spec_sha256=spec.sha256,
        )  # fmt: skip
        log.info("study %s (%s) submitted by %s", study_id, spec.name, me.name)
        self._engine.start_study(study_id)
        return pb.StudyRef(study_id=study_id)

    def GetLedger(self, request: pb.LedgerRequest, context: grpc.ServicerContext) -> pb.LedgerPage:
        self._auth.require(context, Role.ADMIN)
        return _ledger_page(self._ledger, request, context, study=request.study_id or None)

    def Govern(self, request: pb.GovernRequest, context: grpc.ServicerContext) -> pb.GovernReply:
        me = self._auth.require(context, Role.ADMIN)
        if self._governance is None or self._ledger is None:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this coordinator keeps no ledger")
        pem = self._auth.certificate(context)
        if not request.event_json:
            return pb.GovernReply(state_json=self._governance.state_json())
        self._ledger.member(me, pem)  # the ledger holds the certificate the signature rests on
        try:
            message, number = self._governance.submit(
                me, self._ledger.trusted(pem), request.event_json, request.signature
            )
        except (GovernanceError, LedgerError) as exc:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        log.info("governance: %s (%s)", message, me.name)
        return pb.GovernReply(
            message=message, proposal_id=number, state_json=self._governance.state_json()
        )

    def GetStudy(self, request: pb.StudyRef, context: grpc.ServicerContext) -> pb.StudyStatus:
        self._auth.require(context, Role.ADMIN)
        return self._status(request.study_id, context)

    def ListStudies(self, request: pb.PageRequest, context: grpc.ServicerContext) -> pb.StudyList:
        self._auth.require(context, Role.ADMIN)
        studies = [_status_message(r, []) for r in self._state.studies()]
        try:
            chosen, token = page(studies, lambda s: s.study_id, request)
        except ProtocolError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.StudyList(studies=chosen, next_page_token=token)

    def WatchStudy(
        self, request: pb.StudyRef, context: grpc.ServicerContext
    ) -> Iterator[pb.StudyStatus]:
        self._auth.require(context, Role.ADMIN)
        seen = -1
        while context.is_active():
            version = self._events.wait(request.study_id, seen, timeout_s=1.0)
            if version == seen:
                continue
            seen = version
            status = self._status(request.study_id, context)
            yield status
            if status.state in FINISHED_STATES:
                return

    def CancelStudy(
        self, request: pb.CancelStudyRequest, context: grpc.ServicerContext
    ) -> pb.StudyStatus:
        """Record who cancelled and why, then stop the study's runner: an open round closes
        without committing and its tasks are withdrawn from the nodes' queues."""
        me = self._auth.require(context, Role.ADMIN)
        try:
            self._state.study(request.study_id)
        except StoreError as exc:
            abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        try:
            self._state.cancel_study(
                request.study_id, me.name, request.reason[:MAX_REFUSAL_CHARS], now=time.time()
            )
        except StoreError as exc:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        log.info("study %s cancelled by %s", request.study_id, me.name)
        self._engine.cancel(request.study_id)
        return self._status(request.study_id, context)

    def ListNodes(self, request: pb.PageRequest, context: grpc.ServicerContext) -> pb.NodeList:
        self._auth.require(context, Role.ADMIN)
        try:
            chosen, token = page(self._node_infos(), lambda n: n.name, request)
        except ProtocolError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.NodeList(nodes=chosen, next_page_token=token)

    def _node_infos(self) -> list[pb.NodeInfo]:
        return [
            pb.NodeInfo(
                name=s.name,
                online=s.online,
                last_seen_unix_ms=int(s.last_seen * 1000),
                datasets=list(s.datasets),
                revoked=s.revoked,
                dataset_sizes=[
                    pb.DatasetSize(name=d, train_rows=z.train_rows, test_rows=z.test_rows)
                    for d, z in sorted(s.sizes.items())
                ],
                agent_version=s.agent_version,
                cert_not_after_unix_ms=int(s.cert_not_after * 1000),
            )
            for s in self._directory.statuses()
        ]

    def DownloadModel(
        self, request: pb.FetchModelRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        self._auth.require(context, Role.ADMIN)
        blocked = self._release.refusal(request.sha256) if self._release is not None else None
        if blocked is not None:  # a hospital's privacy audit holds it (medfed.governance.release)
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, blocked)
        yield from _model_stream(self._models, request.sha256, context)

    def _status(self, study_id: str, context: grpc.ServicerContext) -> pb.StudyStatus:
        try:
            record = self._state.study(study_id)
        except StoreError as exc:
            abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        encrypted = self._state.encrypted_evals(study_id)
        status = _status_message(record, self._state.rounds(study_id), encrypted)
        sites = self._progress.sites(study_id, status.spec.dataset.name, list(status.spec.nodes))
        status.sites.extend(
            pb.SiteState(
                node=s.node,
                status=s.status.value,
                reason=s.reason,
                last_seen_unix_ms=int(s.last_seen_unix * 1000),
            )
            for s in sites
        )
        status.refusals.extend(
            pb.Refusal(round=r, node=node, reason=why, code=parse_refusal(why)[0])
            for r, node, why in self._state.rejections(study_id)
        )
        return status


def _status_message(
    record: StudyRecord,
    rounds: list[RoundRecord],
    encrypted: Mapping[int, EncryptedEval] | None = None,
) -> pb.StudyStatus:
    sealed = {
        n: pb.EncryptedEval(sha256=e.sha256, names=list(e.names), sites=e.sites)
        for n, e in (encrypted or {}).items()
    }
    return pb.StudyStatus(
        study_id=record.study_id,
        spec=spec_to_proto(StudySpec.from_json(record.spec_json)),
        state=record.state,
        completed_rounds=record.completed_rounds,
        model_sha256=record.model_sha256,
        message=record.message,
        rounds=[
            pb.RoundSummary(
                round=r.round,
                model_sha256=r.model_sha256,
                selected=r.selected,
                accepted=r.accepted,
                rejected=r.rejected,
                metrics=r.metrics,
                per_node=[
                    pb.NodeMetrics(node=m.node, num_examples=m.num_examples, metrics=m.metrics)
                    for m in r.per_node
                    if m.kind == "eval"
                ],
                train_per_node=[
                    pb.NodeMetrics(node=m.node, num_examples=m.num_examples, metrics=m.metrics)
                    for m in r.per_node
                    if m.kind == "train"
                ],
                rejections=list(r.rejections),
                committed_unix_ms=int(r.committed_unix * 1000),
                duration_s=r.duration_s,
                encrypted_eval=sealed.get(r.round),
            )
            for r in rounds
        ],
    )
