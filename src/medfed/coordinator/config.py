"""Coordinator configuration, read from TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfed.errors import ConfigError
from medfed.transport.tls import TlsFiles


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
    """Updates staged in memory at once (each the size of the model); more overlap, more RAM."""
    receive_window_bytes: int = 0
    """Fixed per-stream HTTP/2 receive window; 0 lets gRPC size it (fastest, buffers more)."""

    @property
    def database_url(self) -> str:
        return self.state_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Relative paths in the file are taken relative to the file's folder."""
    doc = read_toml(path)
    base = path.parent
    tls = require_table(doc, "tls", path)
    try:
        return CoordinatorConfig(
            listen=str(doc.get("listen", "127.0.0.1:50051")),
            data_dir=_path(base, doc["data_dir"]),
            tls=TlsFiles(_path(base, tls["cert"]), _path(base, tls["key"]), _path(base, tls["ca"])),
            crl=_path(base, tls["crl"]) if "crl" in tls else None,
            state_url=str(doc.get("state_url", "")),
            heartbeat_interval_s=int(doc.get("heartbeat_interval_s", 5)),
            node_offline_after_s=float(doc.get("node_offline_after_s", 20.0)),
            upload_buffers=max(1, int(doc.get("upload_buffers", 2))),
            receive_window_bytes=max(0, int(doc.get("receive_window_bytes", 0))),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing key {exc.args[0]!r}") from exc


def read_toml(path: Path, what: str = "config") -> dict[str, Any]:
    """Parse a TOML file (data only: tomllib builds no objects), naming the file on error."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def require_table(doc: Mapping[str, Any], key: str, source: object) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [{key}] table is missing")
    return value


def _path(base: Path, value: object) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


@dataclass(frozen=True)
class ClientConfig:
    """How an admin (researcher) reaches the coordinator."""

    coordinator: str
    tls: TlsFiles
    server_name: str = ""


def load_client_config(path: Path) -> ClientConfig:
    doc = read_toml(path)
    tls = require_table(doc, "tls", path)
    base = path.parent
    try:
        return ClientConfig(
            coordinator=str(doc["coordinator"]),
            tls=TlsFiles(_path(base, tls["cert"]), _path(base, tls["key"]), _path(base, tls["ca"])),
            server_name=str(doc.get("server_name", "")),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing key {exc.args[0]!r}") from exc
