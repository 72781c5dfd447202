"""``medfed coordinator``: write the coordinator's config, run the coordinator server."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import err, medfed_errors, out, setup_logging
from medfed.cli.config_files import CertsOption, ForceOption, config_path, tls_values, write_config

app = typer.Typer(help="Configure and run the coordinator.", no_args_is_help=True)


@app.command()
def init(
    certs: CertsOption,
    name: Annotated[str, typer.Option(help="The coordinator's certificate name.")] = "coordinator",
    listen: Annotated[str, typer.Option(help="host:port to serve on.")] = "0.0.0.0:50051",
    data_dir: Annotated[
        Path | None, typer.Option(help="State and model store (default: data/ beside --out).")
    ] = None,
    state_url: Annotated[str, typer.Option(help="PostgreSQL URL (default: SQLite).")] = "",
    crl: Annotated[Path | None, typer.Option(help="The CA's crl.pem, to refuse revoked.")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="File to write.")] = Path(
        "coordinator.toml"
    ),
    force: ForceOption = False,
) -> None:
    """Write a commented coordinator config (every key, with its default) from these flags."""
    from medfed.coordinator.config import COORDINATOR_KEYS

    values = {
        "listen": listen,
        "data_dir": config_path(data_dir, out_file) if data_dir else Path("data"),
        **tls_values(certs, name, out_file),
    }
    if state_url:
        values["state_url"] = state_url
    if crl is not None:
        values["tls.crl"] = config_path(crl, out_file)
    with medfed_errors():
        write_config(out_file, "coordinator", COORDINATOR_KEYS, values, force=force)
    if crl is None:
        err.print("[yellow]note:[/yellow] no --crl: revoked certificates will not be refused")
    out.print(f"next: medfed coordinator start --config {out_file}", highlight=False, markup=False)


@app.command()
def start(
    config: Annotated[Path, typer.Option(help="Coordinator TOML config.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the coordinator and serve until SIGINT/SIGTERM; resumes unfinished studies."""
    from medfed.coordinator.config import load_coordinator_config
    from medfed.coordinator.service import Coordinator
    from medfed.transport.runtime import tune_for_bulk_transfer

    setup_logging(verbose)
    tune_for_bulk_transfer()
    with medfed_errors():
        coordinator = Coordinator(load_coordinator_config(config))
        coordinator.start()
    out.print(f"coordinator ready on port {coordinator.port}", highlight=False)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    coordinator.stop()
