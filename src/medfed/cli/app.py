"""The root ``medfed`` command."""

from __future__ import annotations

import typer

from medfed.cli import coordinator, demo, node, pki, study

root = typer.Typer(
    help="medfed: federated learning for hospitals. Raw patient data never leaves a hospital.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
root.add_typer(pki.app, name="pki")
root.add_typer(coordinator.app, name="coordinator")
root.add_typer(node.app, name="node")
root.add_typer(study.app, name="study")
root.command("demo")(demo.demo)


def main() -> None:
    root()


if __name__ == "__main__":
    main()
