"""What every command group shares: error display, logging set-up, consoles."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console, ConsoleDimensions
from rich.logging import RichHandler
from rich.markup import escape

from medfed.errors import MedfedError

PIPED_WIDTH = 400
"""Columns assumed when stdout is a file or a pipe (or COLUMNS, when larger)."""


class _OutputConsole(Console):
    """Rich's console, except that output to a file or pipe is not cut at 80 columns.

    Rich assumes 80 columns when stdout is not a terminal and shrinks tables to fit, cropping
    cells with "…": ``medfed study status > status.txt`` or a script reading ``--watch`` would
    lose hospital names and numbers. A pipe has no width, so tables keep their natural width up to
    :data:`PIPED_WIDTH`; a terminal keeps its own width.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal:
            return size
        return ConsoleDimensions(max(size.width, PIPED_WIDTH), size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


out = _OutputConsole(soft_wrap=True)
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
