"""Lay out a whole consortium on one machine: CA, certificates, configs, node state.

Used by ``medfed demo``, the end-to-end tests and the benchmarks, so all three exercise exactly
what a real deployment runs: separate processes talking mutual TLS on loopback.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role

COORDINATOR_NAME = "coordinator"
ADMIN_NAME = "researcher"


@dataclass(frozen=True)
class Consortium:
    root: Path
    ca_dir: Path
    port: int
    coordinator_config: Path
    admin_config: Path
    node_configs: dict[str, Path]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def node_state(self, node: str) -> Path:
        return self.root / "nodes" / node / "state"

    def node_certs(self, node: str) -> Path:
        return self.root / "nodes" / node / "certs"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_consortium(
    root: Path,
    nodes: Sequence[str],
    *,
    name: str = "medfed-demo",
    port: int | None = None,
    state_url: str = "",
    heartbeat_interval_s: float = 1.0,
    node_offline_after_s: float = 5.0,
    poll_wait_s: float = 10.0,
    coordinator_extra: str = "",
) -> Consortium:
    ca = CertificateAuthority.init(root / "ca", name)
    port = port or free_port()
    coord_dir = root / "coordinator"
    ca.issue(COORDINATOR_NAME, Role.COORDINATOR, coord_dir / "certs")
    coordinator_config = coord_dir / "coordinator.toml"
    state_line = f'state_url = "{state_url}"\n' if state_url else ""
    coordinator_config.write_text(
        f'listen = "127.0.0.1:{port}"\n'
        f'data_dir = "data"\n{state_line}'
        f"heartbeat_interval_s = {max(1, int(heartbeat_interval_s))}\n"
        f"node_offline_after_s = {node_offline_after_s}\n{coordinator_extra}"
        "[tls]\n"
        f'cert = "certs/{COORDINATOR_NAME}.crt"\nkey = "certs/{COORDINATOR_NAME}.key"\n'
        f'ca = "certs/ca.crt"\ncrl = "{ca.crl_path}"\n'
    )
    admin_dir = root / "admin"
    ca.issue(ADMIN_NAME, Role.ADMIN, admin_dir / "certs")
    admin_config = admin_dir / "admin.toml"
    admin_config.write_text(_client_toml(port, ADMIN_NAME))
    node_configs = {}
    for node in nodes:
        node_dir = root / "nodes" / node
        ca.issue(node, Role.NODE, node_dir / "certs")
        (node_dir / "state").mkdir(parents=True, exist_ok=True)
        config = node_dir / "node.toml"
        extra = (
            f'state_dir = "state"\nheartbeat_interval_s = {heartbeat_interval_s}\n'
            f"poll_wait_s = {poll_wait_s}\nmax_backoff_s = 2\n"
        )
        config.write_text(_client_toml(port, node, extra=extra))
        node_configs[node] = config
    return Consortium(root, root / "ca", port, coordinator_config, admin_config, node_configs)


def add_admin(consortium: Consortium, name: str) -> Path:
    """Issue another admin certificate (a council member, say) and write its client config."""
    ca = CertificateAuthority.load(consortium.ca_dir)
    folder = consortium.root / "admins" / name
    ca.issue(name, Role.ADMIN, folder / "certs")
    config = folder / "admin.toml"
    config.write_text(_client_toml(consortium.port, name))
    return config


def _client_toml(port: int, name: str, extra: str = "") -> str:
    return (
        f'coordinator = "127.0.0.1:{port}"\nserver_name = "localhost"\n{extra}'
        "[tls]\n"
        f'cert = "certs/{name}.crt"\nkey = "certs/{name}.key"\nca = "certs/ca.crt"\n'
    )
