"""``medfed node omop``: the hospital's OMOP CDM store (data steward)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The OMOP CDM store: create it, load its vocabulary and FHIR exports (data steward).",
    no_args_is_help=True,
)
