"""What every command group shares: error display, logging set-up, consoles."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from medfed.errors import MedfedError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def medfed_errors() -> Iterator[None]:
    """Turn a :class:`MedfedError` into one red line on stderr and exit code 2."""
    try:
        yield
    except MedfedError as exc:
        message = " ".join(str(exc).split())
        err.print(f"[red]error:[/red] {escape(message)}")
        raise typer.Exit(code=2) from None


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    logging.getLogger("grpc").setLevel(logging.WARNING)
