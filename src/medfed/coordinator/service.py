"""The coordinator process: wires store, engine and servicers to one mTLS gRPC server."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from medfed.coordinator.config import CoordinatorConfig
from medfed.coordinator.directory import NodeDirectory
from medfed.coordinator.engine import Engine, EngineParts, StudyEvents
from medfed.coordinator.governance import GovernanceKeeper
from medfed.coordinator.handlers import admin_service, node_service
from medfed.coordinator.ledger import LedgerKeeper
from medfed.coordinator.models import ServedModels
from medfed.coordinator.progress import StudyProgress
from medfed.coordinator.release import ReleaseGate
from medfed.coordinator.rounds import TaskBoard
from medfed.coordinator.servicer import AdminServicer, NodeServicer
from medfed.errors import ConfigError, GovernanceError
from medfed.governance.council import Council
from medfed.ledger.keys import load_ca
from medfed.pki.revocation import CrlWatcher
from medfed.pki.signer import CertificateSigner
from medfed.store.ledger import LedgerWriter
from medfed.store.models import ModelStore
from medfed.store.state import StateStore
from medfed.transport.auth import PeerAuthorizer
from medfed.transport.grpc_factory import make_server
from medfed.transport.guard import Guard
from medfed.transport.limits import CallLimiter
from medfed.transport.watchdog import StreamRules, StreamWatchdog

if TYPE_CHECKING:  # prometheus_client loads only when metrics_port is set
    from medfed.observability.coordinator import CoordinatorMetrics

log = logging.getLogger("medfed.coordinator")


class Coordinator:
    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.state = StateStore(config.database_url)
        self.ledger: LedgerKeeper | None = None
        self.governance: GovernanceKeeper | None = None
        if config.ledger:
            signer = CertificateSigner.from_files(config.tls.cert, config.tls.key)
            self.state.open_ledger(LedgerWriter(signer, config.tls.ca.read_bytes()), time.time())
            self.ledger = LedgerKeeper(self.state, load_ca(config.tls.ca))
            self.governance = GovernanceKeeper(self.state, council_of(config), time.time())
        self.models = ServedModels(ModelStore(config.models_dir))
        self.metrics: CoordinatorMetrics | None = None
        if config.metrics_port:  # Prometheus /metrics on loopback (medfed.observability)
            from medfed.observability.coordinator import CoordinatorMetrics, CountedModels

            self.metrics = CoordinatorMetrics()
            self.models = CountedModels(ModelStore(config.models_dir), self.metrics.count_sent)
        self.board = TaskBoard()
        self.crl = CrlWatcher(config.crl, config.tls.ca)
        self.directory = NodeDirectory(config.node_offline_after_s, is_revoked=self._revoked)
        self.events = StudyEvents()
        self.progress = StudyProgress(self.directory, self.state)
        self.release = ReleaseGate(self.state, self.governance, time.time)
        self.engine = Engine(
            EngineParts(
                self.state,
                self.models,
                self.board,
                self.directory,
                self.events,
                self.progress,
                suspended=self._suspended,
                audit_recorded=self.release.audit_recorded,
            )
        )
        auth = PeerAuthorizer(self.crl, self.ledger.revoked if self.ledger else None)
        self.guard = Guard(auth, CallLimiter(), StreamWatchdog(stream_rules(config)))
        self.server, self.port = make_server(
            config.listen,
            config.tls,
            max_workers=self.guard.limiter.limits.pool_size,
            receive_window_bytes=config.receive_window_bytes,
        )
        node = NodeServicer(
            auth,
            self.board,
            self.directory,
            self.state,
            self.models,
            config.heartbeat_interval_s,
            config.upload_buffers,
            self.ledger,
        )
        admin = AdminServicer(
            auth, self.state, self.models, self.directory, self.engine, self.events, self.progress,
            self.ledger,
            self.governance,
            self.release,
        )  # fmt: skip
        self.handlers = (node_service(node, self.guard), admin_service(admin, self.guard))
        """The coordinator's method tables; also what an in-memory channel dispatches to
        (:class:`medfed.transport.inmemory.InMemoryChannel`)."""
        self.server.add_generic_rpc_handlers(self.handlers)
        if self.metrics is not None:
            self.metrics.watch(self.state, self.directory)

    def _suspended(self) -> frozenset[str]:
        return self.governance.rules.suspended if self.governance else frozenset()

    def _revoked(self, serial: int) -> bool:
        self.crl.refresh()
        return self.crl.is_revoked(serial)

    def start(self) -> None:
        self.guard.watchdog.start()
        self.server.start()
        log.info("coordinator listening on port %d", self.port)
        if self.metrics is not None:
            port = self.metrics.serve(self.config.metrics_port)
            log.info("Prometheus metrics on http://127.0.0.1:%d/metrics", port)
        resumed = self.engine.resume_all()
        if resumed:
            log.info("resuming studies %s", ", ".join(resumed))

    def stop(self, grace_s: float = 2.0) -> None:
        self.engine.stop()
        self.server.stop(grace_s).wait()
        if self.metrics is not None:
            self.metrics.stop()
        self.guard.watchdog.stop()
        self.guard.tarpit.stop()
        self.state.close()


def council_of(config: CoordinatorConfig) -> Council | None:
    """The configured council; its threshold defaults to a majority of its members."""
    if not config.council:
        return None
    threshold = config.council_threshold or len(config.council) // 2 + 1
    try:
        return Council(frozenset(config.council), threshold)
    except GovernanceError as exc:
        raise ConfigError(f"coordinator config council: {exc}") from None


def stream_rules(config: CoordinatorConfig) -> StreamRules:
    """The configured time limits on every stream (uploads, downloads, study submissions)."""
    return StreamRules(
        first_message_s=config.stream_first_message_s,
        idle_s=config.stream_idle_s,
        min_bytes_per_s=config.stream_min_kib_per_s * 1024,
        grace_s=config.stream_idle_s,
    )
