"""``medfed study report``: a study's self-contained HTML report and the same data as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medfed.cli.common import medfed_errors, out
from medfed.coordinator.config import load_client_config


def report(
    study_id: str,
    config: Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.html and report.json.")],
) -> None:
    """Write the study's report: protocol, per-round curves of every hospital, participation,
    privacy, privacy audits, secure aggregation, refusals and provenance hashes. Opens offline."""
    from medfed.coordinator.client import AdminClient
    from medfed.web.audit import fetch_audit_view
    from medfed.web.report import build_report, write_report

    with medfed_errors():
        cfg = load_client_config(config)
        with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as client:
            status = client.status(study_id)
            head = client.ledger_head()
            audit = fetch_audit_view(study_id, client.studies, client.status,
                                     lambda: client.govern().state_json)  # fmt: skip
        document = build_report(status, ledger_head=head, privacy_audit=audit)
        html_path, json_path = write_report(out_dir, document)
    out.print(f"wrote {escape(str(html_path))} and {escape(str(json_path))}")
    if status.state != "completed":
        out.print(f"note: the study is {status.state}; the report shows it as it is now")
