"""``medfed admin``: set up a researcher's / admin's access to the coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import medfed_errors, out
from medfed.cli.config_files import CertsOption, ForceOption, tls_values, write_config

app = typer.Typer(help="Set up an admin certificate's access (researchers).", no_args_is_help=True)


@app.command()
def init(
    name: Annotated[str, typer.Option(help="Your admin certificate's name, e.g. alice.")],
    coordinator: Annotated[str, typer.Option(help="The coordinator's host:port.")],
    certs: CertsOption,
    server_name: Annotated[
        str, typer.Option(help="Name in the coordinator's certificate, if not its host.")
    ] = "",
    out_file: Annotated[Path, typer.Option("--out", help="File to write.")] = Path("admin.toml"),
    force: ForceOption = False,
) -> None:
    """Write a commented admin config, the --config of every `medfed study` command."""
    from medfed.coordinator.config import ADMIN_KEYS

    values = {"coordinator": coordinator, **tls_values(certs, name, out_file)}
    if server_name:
        values["server_name"] = server_name
    with medfed_errors():
        write_config(out_file, "admin", ADMIN_KEYS, values, force=force)
    out.print(f"next: medfed study nodes --config {out_file}", highlight=False, markup=False)
