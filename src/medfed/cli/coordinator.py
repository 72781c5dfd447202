"""``medfed coordinator``: run the coordinator server."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import medfed_errors, out, setup_logging

app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)


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
