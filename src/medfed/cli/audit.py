"""``medfed audit``: export, show and verify the consortium's ledger.

``verify`` needs nothing but the exported file and the consortium CA certificate: it recomputes
every hash and link, checks every signature (the coordinator's on each entry, each hospital's on
each update it contributed) and names the first entry that fails.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medfed.cli.common import medfed_errors, out

if TYPE_CHECKING:
    from medfed.ledger.entry import Entry

app = typer.Typer(help="The consortium ledger: export it, show it, verify it offline.")

ConfigOption = Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")]


OutFile = Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")]


@app.command()
def export(config: ConfigOption, output: OutFile = None) -> None:
    """Write the whole ledger as JSON Lines, one signed entry per line, exactly as signed."""
    with medfed_errors():
        lines = _fetch(config, "")
    data = b"".join(line + b"\n" for line in lines)
    if output is None:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    output.write_bytes(data)
    out.print(f"{len(lines)} ledger entries written to {output}")


@app.command()
def show(
    config: ConfigOption,
    study: Annotated[str, typer.Option("--study", help="Only this study's entries.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
) -> None:
    """List the ledger's entries (or one study's), newest last."""
    from medfed.ledger.entry import parse_line

    with medfed_errors():
        entries = [parse_line(line) for line in _fetch(config, study)]
    if as_json:
        typer.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    from rich.table import Table

    table = Table("#", "time (UTC)", "event", "study", "what")
    for entry in entries:
        when = datetime.fromtimestamp(entry.time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(entry.seq), when, entry.kind, entry.study, summary(entry))
    out.print(table)


@app.command()
def verify(
    ledger: Annotated[Path, typer.Argument(help="An exported ledger (JSON Lines).")],
    ca: Annotated[Path, typer.Option("--ca", help="The consortium CA certificate (ca.crt).")],
) -> None:
    """Verify an exported ledger offline with the CA certificate alone."""
    from medfed.ledger.chain import verify_entries
    from medfed.ledger.entry import parse_line
    from medfed.ledger.keys import load_ca

    with medfed_errors():
        authority = load_ca(ca)
        raw = ledger.read_bytes().splitlines()
        entries = [parse_line(line) for line in raw if line.strip()]
        verifier = verify_entries(entries, authority)
    head = verifier.head
    rounds = [e for e in entries if e.kind == "round.committed"]
    updates = sum(len(e.payload.get("updates", [])) for e in rounds)
    where = f"head #{head.seq} {head.hash}" if head else "empty"
    out.print(
        f"[green]ledger verifies[/green]: {len(entries)} entries, {len(rounds)} committed rounds, "
        f"{updates} signed updates; {where}"
    )


def summary(entry: Entry) -> str:
    """One line of what an entry records."""
    p: dict[str, Any] = dict(entry.payload)
    if entry.kind == "round.committed":
        rejected = ", ".join(f"{r['node']}: {r['reason']}" for r in p.get("rejected", []))
        text = (
            f"round {p.get('round')}: model {str(p.get('model_sha256', ''))[:12]}, "
            f"{len(p.get('updates', []))} signed updates of {len(p.get('selected', []))} selected"
        )
        return text + (f"; rejected {rejected}" if rejected else "")
    if entry.kind == "member.joined":
        return f"{p.get('role')} {p.get('name')} (certificate {str(p.get('sha256', ''))[:12]})"
    if entry.kind == "study.submitted":
        return f"{p.get('name')} by {p.get('submitted_by')}, spec {str(p.get('spec_sha256'))[:12]}"
    shown = {k: v for k, v in p.items() if k != "certificate" and not isinstance(v, list | dict)}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))


def _fetch(config: Path, study: str) -> list[bytes]:
    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.config import load_client_config

    cfg = load_client_config(config)
    with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as client:
        return client.ledger(study)
