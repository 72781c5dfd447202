"""``medfed dashboard``: the researcher's web dashboard, an admin client like ``medfed study``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import medfed_errors, out
from medfed.coordinator.config import load_client_config


def dashboard(
    config: Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")],
    host: Annotated[
        str, typer.Option(help="Address to serve on; other than loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8050,
    token: Annotated[
        str | None,
        typer.Option(
            help="Required on every request (default: $MEDFED_DASHBOARD_TOKEN); at least 16 "
            "characters. Needed to bind anything but loopback.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the dashboard: consortium, studies, live study pages, model downloads."""
    from medfed.coordinator.client import AdminClient, wait_for_ready
    from medfed.web.app import create_app
    from medfed.web.server import DashboardServer, check_binding

    with medfed_errors():
        binding = check_binding(host, port, token)
        cfg = load_client_config(config)
        with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as client:
            wait_for_ready(client, timeout_s=15)
            app = create_app(
                client,
                token=binding.token,
                allowed_hosts=binding.allowed_hosts(),
                ledger_head=lambda _study: client.ledger_head(),
                governance=lambda: client.govern().state_json,
            )
            server = DashboardServer(app, binding)
            shown = f"[{host}]" if ":" in host else host
            suffix = "/?token=<your token>" if binding.token else "/"
            out.print(f"dashboard on http://{shown}:{port}{suffix} (coordinator {cfg.coordinator})")
            server.run()
