"""Node configuration, read from TOML through declared keys (:mod:`medfed.configfile`).

``medfed node init`` writes this file; relative paths are relative to the file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfed.configfile import TLS_KEYS, Key, Kind, load, tls_files
from medfed.transport.tls import TlsFiles

NODE_KEYS: tuple[Key, ...] = (
    Key("coordinator", Kind.TEXT, "The coordinator's address, host:port; the node dials out"
        " to it and never listens.", required=True),
    Key("server_name", Kind.TEXT, "Name checked in the coordinator's certificate when it is not"
        " the host in `coordinator` (e.g. a SAN); empty: that host.", default=""),
    Key("state_dir", Kind.PATH, "This hospital's folder: dataset registry, approved plans,"
        " privacy ledger, per-study state.", required=True),
    Key("heartbeat_interval_s", Kind.FLOAT, "Seconds between heartbeats to the coordinator.",
        default=5.0, minimum=0.1),
    Key("poll_wait_s", Kind.FLOAT, "Seconds one task request waits at the coordinator before"
        " asking again.", default=20.0, minimum=0.1),
    Key("max_backoff_s", Kind.FLOAT, "Longest wait, in seconds, between reconnection attempts"
        " (exponential backoff, full jitter).", default=30.0, minimum=0.1),
    Key("omop_store", Kind.TEXT, "The OMOP CDM database: a PostgreSQL URL (the data steward's"
        " role, which owns the CDM schema), or empty for the embedded DuckDB file"
        " state_dir/omop.duckdb.", default=""),
    Key("omop_schema", Kind.TEXT, "PostgreSQL schema holding the CDM tables.", default="cdm"),
    Key("stats_k", Kind.INT, "Disclosure threshold for statistics queries: no count below k"
        " leaves this node (cells suppressed, small subsets refused); at least 3.",
        default=5, minimum=3),
    Key("audit_auc_threshold", Kind.FLOAT, "Privacy audit (medfed study audit): above this"
        " membership-inference AUC the node asks that the model's release be blocked (the"
        " coordinator withholds the model until the council overrules it or the node withdraws;"
        ' see "Blocking release"); 0: never ask.', default=0.0, minimum=0.0),
    Key("audit_sample_size", Kind.INT, "Privacy audit: training rows and held-out rows, each,"
        " that the audit scores at most.", default=200, minimum=10),
    Key("metrics_port", Kind.INT, "Port for this node's Prometheus /metrics on 127.0.0.1"
        " (loopback only; tasks, refusals, training seconds, privacy spent); 0: none.",
        default=0, minimum=0),
    *TLS_KEYS,
)  # fmt: skip


@dataclass(frozen=True)
class NodeConfig:
    coordinator: str
    state_dir: Path
    tls: TlsFiles
    server_name: str = ""
    heartbeat_interval_s: float = 5.0
    poll_wait_s: float = 20.0
    max_backoff_s: float = 30.0
    omop_store: str = ""
    omop_schema: str = "cdm"
    stats_k: int = 5
    metrics_port: int = 0
    audit_auc_threshold: float = 0.0
    audit_sample_size: int = 200

    @property
    def omop_location(self) -> str:
        """Where this hospital's OMOP CDM lives: the configured URL, or the embedded file."""
        return self.omop_store or str(self.state_dir / "omop.duckdb")


def load_node_config(path: Path) -> NodeConfig:
    values = load(path, NODE_KEYS, "node config")
    return NodeConfig(
        coordinator=values["coordinator"],
        state_dir=values["state_dir"],
        tls=tls_files(values),
        server_name=values["server_name"],
        heartbeat_interval_s=values["heartbeat_interval_s"],
        poll_wait_s=values["poll_wait_s"],
        max_backoff_s=values["max_backoff_s"],
        omop_store=values["omop_store"],
        omop_schema=values["omop_schema"],
        stats_k=values["stats_k"],
        metrics_port=values["metrics_port"],
        audit_auc_threshold=values["audit_auc_threshold"],
        audit_sample_size=values["audit_sample_size"],
    )
