"""The root ``medfed`` command."""

from __future__ import annotations

import typer

from medfed.cli import coordinator, node, pki, study

root = typer.Typer(
    help="medfed: federated learning for hospitals. Raw patient data never leaves a hospital.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
root.add_typer(pki.app, name="pki")
root.add_typer(coordinator.app, name="coordinator")
root.add_typer(node.app, name="node")
root.add_typer(study.app, name="study")


@root.command("demo")
def demo(
    out: str = typer.Option("reports/demo", "--out", help="Report folder."),
    rounds: int | None = typer.Option(None, help="Override the study's rounds."),
    workdir: str | None = typer.Option(None, help="Keep the consortium here (default: temp)."),
) -> None:
    """Run a FedAvg study across four hospitals over mTLS on loopback and report it."""
    from pathlib import Path

    from medfed.cli.demo import run_demo  # heavy (torch, sklearn): only when asked for

    run_demo(Path(out), rounds, Path(workdir) if workdir else None)


def main() -> None:
    root()


if __name__ == "__main__":
    main()
