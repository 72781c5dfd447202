"""``medfed flower``: run a hospital's existing Flower client script as a medfed node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfed.cli.common import medfed_errors, out, setup_logging

app = typer.Typer(
    help="Bring your Flower client: run a NumPyClient script as a medfed node.",
    no_args_is_help=True,
)
ScriptArgument = Annotated[Path, typer.Argument(help="The client script (approve it first).")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    script: ScriptArgument,
    config: Annotated[Path, typer.Option(help="Node TOML config (`medfed node init`).")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run SCRIPT (written against flwr) unchanged: its start_numpy_client/start_client starts
    this hospital's node instead (node config, mutual TLS; the script's server_address is
    ignored). Arguments after the options reach the script's sys.argv. Serves until
    SIGINT/SIGTERM."""
    from medfed.compat.runner import run_flower_script
    from medfed.transport.runtime import tune_for_bulk_transfer

    setup_logging(verbose)
    tune_for_bulk_transfer()
    with medfed_errors():
        name = run_flower_script(script, config, list(ctx.args))
    out.print(f"client plan {name} stopped", highlight=False)


@app.command()
def layout(
    script: ScriptArgument,
    names: Annotated[
        str, typer.Option(help="Comma-separated names for the arrays, in order.")
    ] = "",
    init: Annotated[
        Path | None,
        typer.Option(help="Also write these parameters as the study's initial model here."),
    ] = None,
) -> None:
    """Print the study spec's `layout = [...]` for SCRIPT's client, from its get_parameters
    (with --init, write them as the study's `init` file too). This runs SCRIPT on this machine
    (as `python SCRIPT` would); nothing starts a node."""
    from medfed.compat.layout import layout_of, layout_toml, write_safetensors
    from medfed.compat.loader import load_client
    from medfed.errors import ClientPlanError

    with medfed_errors():
        client = load_client(script.read_bytes(), script.resolve())
        try:
            arrays = client.get_parameters({})  # type: ignore[attr-defined]
        except Exception as exc:
            raise ClientPlanError(f"get_parameters of {script} failed: {exc!r}") from exc
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        declared = layout_of(arrays, wanted)
        out.print(layout_toml(declared), highlight=False, markup=False)
        if init is not None:
            write_safetensors(init, declared, arrays)
            out.print(f'init = "{init}"', highlight=False, markup=False)
