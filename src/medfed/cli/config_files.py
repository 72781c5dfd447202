"""What ``medfed coordinator init``, ``medfed node init`` and ``medfed admin init`` share: write a
commented config file that the real loader accepts, from the declared keys of its role."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medfed.cli.common import err, out
from medfed.configfile import Key, Value, parse, render
from medfed.errors import ConfigError

CertsOption = Annotated[
    Path,
    typer.Option(
        help="Folder with <name>.crt, <name>.key and ca.crt (`medfed pki issue`, or csr + sign)."
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]


def config_path(path: Path, config: Path) -> Path:
    """``path`` (given relative to the current folder) as the config file will read it: relative
    to the file's folder when inside it, otherwise absolute."""
    target = Path(os.path.abspath(path.expanduser()))
    try:
        return target.relative_to(os.path.abspath(config.parent))
    except ValueError:
        return target


def tls_values(certs: Path, name: str, config: Path) -> dict[str, Value]:
    """The ``[tls]`` keys for the files ``medfed pki`` names after the certificate holder."""
    files = {"tls.cert": f"{name}.crt", "tls.key": f"{name}.key", "tls.ca": "ca.crt"}
    return {key: config_path(certs / file, config) for key, file in files.items()}


def write_config(
    config: Path,
    role: str,
    keys: Sequence[Key],
    values: Mapping[str, Value],
    *,
    force: bool,
) -> None:
    """Render, check that the text loads through the role's keys, then write (0644; the file holds
    paths, not secrets). An existing file is kept unless ``force``."""
    if config.exists() and not force:
        raise ConfigError(f"{config} exists; pass --force to overwrite it")
    title = (
        f"medfed {role} config, written by `medfed {role} init`.\n"
        "Relative paths are taken from this file's folder. Every key is listed below with its\n"
        'default; the README\'s "Configuration reference" has the same list.'
    )
    text = render(title, keys, values)
    parse(tomllib.loads(text), keys, base=config.parent, source=str(config))
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text, encoding="utf-8")
    out.print(f"wrote {escape(str(config))}", highlight=False)
    for key in ("tls.cert", "tls.key", "tls.ca"):
        path = Path(str(values[key]))
        if not (path if path.is_absolute() else config.parent / path).exists():
            err.print(f"[yellow]note:[/yellow] {escape(str(path))} does not exist yet")
