"""``medfed health``: the check a container engine or a service manager runs against a coordinator
or a node, over the same mutual TLS as everything else.

A probe completes a TLS handshake and stops there: it makes no call. A coordinator serves no
unauthenticated endpoint to answer a plain health request, and a node's own heartbeat must not be
sent by anyone but its agent (a probe that heartbeats would keep a dead node "online" at the
coordinator). A handshake that succeeds proves what an operator needs to know: the process
listens (coordinator) or the network path is open (node), the certificate and key load, and the
other side accepts them. Exit code 0 when healthy, 1 when not, 2 for a config that cannot be read.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medfed.cli.common import err, medfed_errors, out
from medfed.coordinator.config import load_coordinator_config
from medfed.errors import ConfigError
from medfed.node.config import load_node_config
from medfed.transport.tls import TlsFiles

app = typer.Typer(
    help="Health checks for containers and service managers (exit 0: healthy).",
    no_args_is_help=True,
)
TimeoutOption = Annotated[
    float, typer.Option(help="Seconds to wait for the mutual-TLS handshake.", min=0.1)
]
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")  # noqa: S104 (recognized, never bound)
_LOOPBACK_NAME = "localhost"
"""In every coordinator certificate (medfed.pki.profiles.COORDINATOR_DEFAULT_SANS)."""


def handshake(target: str, tls: TlsFiles, server_name: str, timeout_s: float) -> float:
    """Open a mutual-TLS channel to ``target`` and wait until it is ready; returns the seconds
    it took. Raises :class:`TimeoutError` when it is not ready within ``timeout_s``."""
    import grpc

    from medfed.transport.grpc_factory import make_channel

    started = time.monotonic()
    channel = make_channel(target, tls, server_name=server_name or None)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise TimeoutError(f"no mutual-TLS connection to {target} within {timeout_s:g} s") from None
    finally:
        channel.close()
    return time.monotonic() - started


def diagnose(target: str, timeout_s: float = 2.0) -> str:
    """Why a handshake with ``target`` did not complete, as far as a plain TCP connection can
    tell: the name does not resolve, nothing accepts on the port, or the port is open (so the
    TLS handshake itself failed: a certificate the other side refuses, or it is not medfed)."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        addresses = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"{host!r} does not resolve ({exc})"
    family, kind, proto, _, address = addresses[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.settimeout(timeout_s)
            probe.connect(address)
    except TimeoutError:
        return f"no answer from {address[0]} port {port} within {timeout_s:g} s"
    except OSError as exc:
        return f"cannot connect to {address[0]} port {port}: {exc.strerror or exc}"
    return (
        f"{address[0]} port {port} accepts connections, so the TLS handshake failed: the other"
        " side refused this certificate (another consortium's CA, revoked, wrong role), or it is"
        " not a medfed coordinator"
    )


def local_target(listen: str) -> str:
    """Where a probe on the coordinator's own machine dials its ``listen`` address."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address {listen!r} is not host:port")
    return f"127.0.0.1:{port}" if host in _ANY_ADDRESS else listen


def writable(folder: Path) -> None:
    """Raise :class:`ConfigError` unless a file can be created in ``folder`` (a read-only root
    filesystem with a volume missing shows up here, not at the first task)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write in {folder}: {exc.strerror}") from exc


def _report(what: str, target: str, timeout_s: float, tls: TlsFiles, server_name: str) -> None:
    try:
        took = handshake(target, tls, server_name, timeout_s)
    except TimeoutError as exc:
        reason = f"{exc}; {diagnose(target)}"
        err.print(f"[red]unhealthy:[/red] {escape(what)}: {escape(reason)}")
        raise typer.Exit(code=1) from None
    out.print(f"healthy: {what} ({took * 1000:.0f} ms to {target})", highlight=False, markup=False)


@app.command("coordinator")
def coordinator(
    config: Annotated[Path, typer.Option(help="Coordinator TOML config.")],
    timeout: TimeoutOption = 5.0,
) -> None:
    """Is the coordinator serving? A handshake with its own certificate on its own port."""
    with medfed_errors():
        cfg = load_coordinator_config(config)
        target = local_target(cfg.listen)
        writable(cfg.data_dir)
    _report("coordinator serving", target, timeout, cfg.tls, _LOOPBACK_NAME)


@app.command("node")
def node(
    config: Annotated[Path, typer.Option(help="Node TOML config.")],
    timeout: TimeoutOption = 5.0,
) -> None:
    """Can this node reach its coordinator with its certificate, and write its state?"""
    with medfed_errors():
        cfg = load_node_config(config)
        writable(cfg.state_dir)
    _report("node reaches its coordinator", cfg.coordinator, timeout, cfg.tls, cfg.server_name)
