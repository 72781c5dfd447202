"""``medfed node consent``: patients' consent per study, enforced by the database (data steward)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Patient consent per study: grant, revoke, import FHIR Consent, show (data steward).",
    no_args_is_help=True,
)
