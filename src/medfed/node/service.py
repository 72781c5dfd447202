"""Starting a node: check our own certificate first, then build the agent from the config."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from medfed.compat.plan import ClientPlans, LiveClient
from medfed.data.registry import DatasetRegistry
from medfed.errors import AuthError
from medfed.ledger.keys import load_ca
from medfed.node.agent import Backoff, NodeAgent
from medfed.node.audit import AuditResponder, AuditSettings, ParticipationLog
from medfed.node.client import CoordinatorClient
from medfed.node.config import NodeConfig
from medfed.node.executor import TaskExecutor
from medfed.node.ledger import NodeLedger
from medfed.node.policy import LocalPolicy
from medfed.node.secure import SecureAggregationClient
from medfed.node.stats import StatsResponder
from medfed.pki.identity import Identity, Role, identity_from_cert
from medfed.pki.signer import CertificateSigner
from medfed.privacy.ledger import PrivacyLedger
from medfed.secagg.signing import CaVerifier
from medfed.transport.tls import TlsFiles


def check_own_certificate(tls: TlsFiles, now: datetime | None = None) -> Identity:
    """Fail fast, with the reason, on a certificate the coordinator would refuse anyway."""
    cert_pem, _, ca_pem = tls.read()
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    moment = now or datetime.now(UTC)
    if moment > cert.not_valid_after_utc:
        raise AuthError(f"certificate {tls.cert} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if moment < cert.not_valid_before_utc:
        raise AuthError(f"certificate {tls.cert} is not valid before {cert.not_valid_before_utc}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AuthError(f"certificate {tls.cert} was not issued by the CA in {tls.ca}") from exc
    identity = identity_from_cert(cert)
    if identity.role is not Role.NODE:
        raise AuthError(
            f"certificate {tls.cert} is a {identity.role.value} certificate, not a node's"
        )
    return identity


def build_agent(
    config: NodeConfig, live_clients: Mapping[str, LiveClient] | None = None
) -> tuple[Identity, NodeAgent]:
    """``live_clients``: clients a drop-in Flower script started (``medfed flower run``)."""
    identity = check_own_certificate(config.tls)
    importlib.import_module("torch")  # load the training stack now, not inside round 1's deadline
    datasets = DatasetRegistry(config.state_dir)
    make_executor: Callable[..., TaskExecutor] = TaskExecutor
    make_client: Callable[..., CoordinatorClient] = CoordinatorClient
    if config.metrics_port:  # Prometheus /metrics on loopback (medfed.observability.node)
        from medfed.observability.node import metered

        _, make_executor, make_client = metered(config.metrics_port)
    executor = make_executor(
        datasets,
        LocalPolicy(config.state_dir),
        config.state_dir / "studies",
        PrivacyLedger(config.state_dir / "privacy.sqlite"),
        clients=ClientPlans(config.state_dir, live_clients),
    )
    signer = CertificateSigner.from_files(config.tls.cert, config.tls.key)
    client = make_client(config.coordinator, config.tls, config.server_name, signer=signer.sign)
    ledger = NodeLedger(
        config.state_dir, load_ca(config.tls.ca), client.ledger_page, node=identity.name
    )
    agent = NodeAgent(
        client,
        executor,
        datasets.sizes,  # re-read each heartbeat: the steward may add a dataset
        heartbeat_interval_s=config.heartbeat_interval_s,
        poll_wait_s=config.poll_wait_s,
        backoff=Backoff(max_s=config.max_backoff_s),
        secure=SecureAggregationClient(identity.name, signer, CaVerifier.from_file(config.tls.ca)),
        ledger=ledger,
        stats=StatsResponder(identity.name, datasets, config.state_dir, config.stats_k),
        audit=AuditResponder(
            datasets,
            executor.admit_stage,
            ParticipationLog(config.state_dir),
            AuditSettings(config.audit_sample_size, auc_threshold=config.audit_auc_threshold),
        ),
    )
    return identity, agent
