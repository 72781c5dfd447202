"""Binding the dashboard: loopback by default, and never another interface without a token.

The dashboard shows what the researcher's admin certificate may see (every study's results, the
consortium's nodes) and can download models: on 127.0.0.1 only this machine's users reach it; on
any other address anyone on that network would, so :func:`check_binding` refuses to start there
unless every request must carry a token.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from dataclasses import dataclass

from medfed.errors import ConfigError

TOKEN_ENV = "MEDFED_DASHBOARD_TOKEN"  # noqa: S105 (the variable's name, not a secret)
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
"""Host headers a loopback dashboard answers (a DNS-rebinding page sends its own name)."""


@dataclass(frozen=True)
class Binding:
    host: str
    port: int
    token: str

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def allowed_hosts(self) -> tuple[str, ...]:
        """Host headers accepted: the loopback names, or anything once a token guards it."""
        if self.token:
            return ("*",)
        return (*LOOPBACK_HOSTS, self.host)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False


def check_binding(host: str, port: int, token: str | None = None) -> Binding:
    """The binding to serve on, or ConfigError saying why not. ``token`` None reads
    ``MEDFED_DASHBOARD_TOKEN``."""
    if token is None:
        token = os.environ.get(TOKEN_ENV, "")
    if not 0 <= port <= 65535:
        raise ConfigError(f"dashboard port {port} is not a TCP port (0-65535)")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"the dashboard token must be at least {MIN_TOKEN_CHARS} characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve the dashboard on {host}:{port} without authentication: anyone "
            f"who can reach {host} would see every study your admin certificate can. Bind to "
            f"127.0.0.1 (the default), or pass --token (or set {TOKEN_ENV})."
        )
    return Binding(host, port, token)


class DashboardServer:
    """uvicorn on a thread (tests, and the CLI's foreground run through ``run``)."""

    def __init__(self, app: object, binding: Binding) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=binding.host,
            port=binding.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when asked for 0)."""
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise ConfigError("the dashboard is not listening")

    def run(self) -> None:
        self._server.run()

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._server.run, name="dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the dashboard did not start (is the port in use?)")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
