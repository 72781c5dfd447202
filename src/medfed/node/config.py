"""Node configuration, read from TOML. Relative paths are relative to the file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from medfed.errors import ConfigError
from medfed.transport.tls import TlsFiles


@dataclass(frozen=True)
class NodeConfig:
    coordinator: str
    state_dir: Path
    tls: TlsFiles
    server_name: str = ""
    heartbeat_interval_s: float = 5.0
    poll_wait_s: float = 20.0
    max_backoff_s: float = 30.0


def load_node_config(path: Path) -> NodeConfig:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read node config {path}: {exc}") from exc
    base = path.parent

    def rel(value: object) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else base / p

    try:
        tls = doc["tls"]
        return NodeConfig(
            coordinator=str(doc["coordinator"]),
            state_dir=rel(doc["state_dir"]),
            tls=TlsFiles(rel(tls["cert"]), rel(tls["key"]), rel(tls["ca"])),
            server_name=str(doc.get("server_name", "")),
            heartbeat_interval_s=float(doc.get("heartbeat_interval_s", 5.0)),
            poll_wait_s=float(doc.get("poll_wait_s", 20.0)),
            max_backoff_s=float(doc.get("max_backoff_s", 30.0)),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: missing or invalid key {exc}") from exc
