"""``medfed node protocol``: the data steward approves a study protocol by its hash.

The hash is the study spec's SHA-256, printed on the protocol appendix (``medfed study
protocol``), by ``medfed study status`` and in the ledger's ``study.submitted`` entry. The approval
is signed with this node's certificate key and reaches the coordinator with the next heartbeat,
which records it in the ledger; a study that requires approval starts only when it is in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import medfed_errors, out

app = typer.Typer(help="Approve study protocols (their spec hash) for this hospital.")

ConfigOption = Annotated[Path, typer.Option(help="Node TOML config (`medfed node init`).")]


@app.command("approve")
def approve(
    spec_sha256: Annotated[str, typer.Argument(help="The study protocol's hash (64 hex).")],
    config: ConfigOption,
) -> None:
    """Approve the protocol with this hash, signed with this hospital's certificate key."""
    from medfed.node.config import load_node_config
    from medfed.node.protocols import ProtocolApprovals
    from medfed.pki.signer import CertificateSigner

    with medfed_errors():
        cfg = load_node_config(config)
        signer = CertificateSigner.from_files(cfg.tls.cert, cfg.tls.key)
        ProtocolApprovals(cfg.state_dir).approve(spec_sha256.strip().lower(), signer.sign)
    out.print(f"approved protocol {spec_sha256}; the coordinator records it at the next heartbeat")


@app.command("list")
def list_approved(config: ConfigOption) -> None:
    """The protocols this hospital approved."""
    from rich.table import Table

    from medfed.node.config import load_node_config
    from medfed.node.protocols import ProtocolApprovals

    with medfed_errors():
        approved = ProtocolApprovals(load_node_config(config).state_dir).approved()
    table = Table("protocol (spec sha256)", "approved (UTC)")
    for a in approved:
        table.add_row(
            a.spec_sha256, f"{datetime.fromtimestamp(a.approved_unix, UTC):%Y-%m-%d %H:%M}"
        )
    out.print(table)
