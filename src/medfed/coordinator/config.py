"""Coordinator and admin-client configuration, read from TOML through declared keys.

``medfed coordinator init`` and ``medfed admin init`` write these files; the README's
configuration reference lists every key, generated from the same declarations
(:mod:`medfed.configfile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfed.configfile import TLS_KEYS, Key, Kind, load, tls_files
from medfed.transport.tls import TlsFiles

COORDINATOR_KEYS: tuple[Key, ...] = (
    Key("listen", Kind.TEXT, "Address to serve on, host:port (0.0.0.0:PORT: every interface).",
        default="127.0.0.1:50051"),
    Key("data_dir", Kind.PATH, "Folder for the SQLite state database and the model store.",
        required=True),
    Key("state_url", Kind.TEXT, "PostgreSQL URL for study state (postgresql+psycopg://...);"
        " empty: SQLite in data_dir.", default=""),
    Key("heartbeat_interval_s", Kind.INT, "Seconds between heartbeats, announced to each node"
        " when it registers.", default=5, minimum=1),
    Key("node_offline_after_s", Kind.FLOAT, "A node silent this many seconds is shown offline"
        " and not selected for rounds.", default=20.0, minimum=0),
    Key("upload_buffers", Kind.INT, "Most updates staged in memory at once (each up to the"
        " model's size); fast uploads are taken one at a time, the others serve slow or stalled"
        " senders.", default=2, minimum=1),
    Key("receive_window_bytes", Kind.INT, "Per-stream HTTP/2 receive window: what gRPC buffers"
        " of an upload not yet read; 0 lets gRPC grow it by bandwidth probing (tens of MB per"
        " waiting upload).", default=4 << 20, minimum=0),
    Key("stream_first_message_s", Kind.FLOAT, "A stream (upload, download, study submission)"
        " whose first message takes longer is cut.", default=10.0, minimum=0.1),
    Key("stream_idle_s", Kind.FLOAT, "A stream kept waiting this long for one message (or"
        " reader) is cut; also the grace before the minimum rate applies.", default=30.0,
        minimum=0.1),
    Key("stream_min_kib_per_s", Kind.FLOAT, "Slowest average rate a stream may move at,"
        " counted only while waiting on the peer.", default=16.0, minimum=0),
    Key("metrics_port", Kind.INT, "Port for Prometheus /metrics on 127.0.0.1 (loopback only);"
        " 0: no metrics endpoint.", default=0, minimum=0),
    Key("ledger", Kind.INT, "1: keep the signed ledger (the default: the audit trail every"
        " hospital verifies); 0 only to measure what it costs.", default=1, minimum=0),
    Key("council", Kind.TEXT, "The governance council: admin certificate names, comma"
        " separated; fixed in the ledger when the consortium is created. Empty: no council.",
        default=""),
    Key("council_threshold", Kind.INT, "Yes votes a council proposal needs (m of n); 0: a"
        " majority of the council.", default=0, minimum=0),
    *TLS_KEYS,
    Key("tls.crl", Kind.PATH, "The CA's revocation list (crl.pem), re-read when it changes;"
        " unset: no revocation checking.")
)  # fmt: skip

ADMIN_KEYS: tuple[Key, ...] = (
    Key("coordinator", Kind.TEXT, "The coordinator's address, host:port.", required=True),
    Key("server_name", Kind.TEXT, "Name checked in the coordinator's certificate when it is not"
        " the host in `coordinator` (e.g. a SAN); empty: that host.", default=""),
    *TLS_KEYS,
)  # fmt: skip
"""A researcher's / admin's file; a node's file has these keys and more (medfed.node.config)."""


@dataclass(frozen=True)
class CoordinatorConfig:
    listen: str
    data_dir: Path
    tls: TlsFiles
    crl: Path | None = None
    state_url: str = ""
    heartbeat_interval_s: int = 5
    node_offline_after_s: float = 20.0
    upload_buffers: int = 2
    receive_window_bytes: int = 4 << 20
    stream_first_message_s: float = 10.0
    stream_idle_s: float = 30.0
    stream_min_kib_per_s: float = 16.0
    council: tuple[str, ...] = ()
    council_threshold: int = 0
    ledger: bool = True
    """Keep the signed ledger (:mod:`medfed.ledger`); off only to measure what it costs (bench)."""
    metrics_port: int = 0

    @property
    def database_url(self) -> str:
        return self.state_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Relative paths in the file are taken relative to the file's folder."""
    values = load(path, COORDINATOR_KEYS, "coordinator config")
    return CoordinatorConfig(
        listen=values["listen"],
        data_dir=values["data_dir"],
        tls=tls_files(values),
        crl=values["tls.crl"],
        state_url=values["state_url"],
        heartbeat_interval_s=values["heartbeat_interval_s"],
        node_offline_after_s=values["node_offline_after_s"],
        upload_buffers=values["upload_buffers"],
        receive_window_bytes=values["receive_window_bytes"],
        stream_first_message_s=values["stream_first_message_s"],
        stream_idle_s=values["stream_idle_s"],
        stream_min_kib_per_s=values["stream_min_kib_per_s"],
        metrics_port=values["metrics_port"],
        council=tuple(n.strip() for n in values["council"].split(",") if n.strip()),
        council_threshold=values["council_threshold"],
        ledger=bool(values["ledger"]),
    )


@dataclass(frozen=True)
class ClientConfig:
    """How an admin (researcher) reaches the coordinator."""

    coordinator: str
    tls: TlsFiles
    server_name: str = ""


def load_client_config(path: Path) -> ClientConfig:
    values = load(path, ADMIN_KEYS, "admin config")
    return ClientConfig(values["coordinator"], tls_files(values), values["server_name"])
