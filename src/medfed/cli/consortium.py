"""``medfed consortium members``: who is in the consortium and how each hospital has done, from
the ledger (certificates, revocations, rounds accepted and rejected, reputation, reward points)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import medfed_errors, out

app = typer.Typer(help="The consortium as the ledger records it.")

ConfigOption = Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")]


@app.command()
def members(config: ConfigOption) -> None:
    """Members, their certificates, and each hospital's record and reputation over all studies."""
    from rich.table import Table

    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.config import load_client_config
    from medfed.ledger.entry import parse_line
    from medfed.ledger.members import members as read_members

    with medfed_errors():
        cfg = load_client_config(config)
        with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as client:
            found = read_members(parse_line(line) for line in client.ledger())
    table = Table("member", "role", "joined (UTC)", "certificate", "rounds accepted", "rejected",
                  "reputation", "reward points")  # fmt: skip
    for m in found:
        when = f"{datetime.fromtimestamp(m.joined_ms / 1000, UTC):%Y-%m-%d %H:%M}"
        cert = m.certificate_sha256[:12] + ("… revoked" if m.revoked else "…")
        score = "—" if m.reputation is None else f"{m.reputation:.3f}"
        table.add_row(m.name, m.role, when, cert, str(m.rounds_accepted), str(m.rounds_rejected),
                      score, str(m.reward_points))  # fmt: skip
    out.print(table)
