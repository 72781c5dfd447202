"""The root ``medfed`` command."""

from __future__ import annotations

import typer

from medfed.cli import (
    admin,
    audit,
    consortium,
    coordinator,
    dashboard,
    flower,
    governance,
    health,
    model,
    node,
    pki,
    study,
)

root = typer.Typer(
    help="medfed: federated learning for hospitals. Raw patient data never leaves a hospital.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
root.add_typer(pki.app, name="pki")
root.add_typer(coordinator.app, name="coordinator")
root.add_typer(node.app, name="node")
root.add_typer(study.app, name="study")
root.add_typer(admin.app, name="admin")
root.add_typer(audit.app, name="audit")
root.add_typer(consortium.app, name="consortium")
root.add_typer(governance.app, name="governance")
root.add_typer(model.app, name="model")
root.add_typer(flower.app, name="flower")
root.command("dashboard")(dashboard.dashboard)
root.add_typer(health.app, name="health")


@root.command("demo")
def demo(
    out: str = typer.Option("reports/demo", "--out", help="Report folder."),
    rounds: int | None = typer.Option(None, help="Override the study's rounds."),
    workdir: str | None = typer.Option(None, help="Keep the consortium here (default: temp)."),
    imaging: bool = typer.Option(
        False, "--imaging", help="The imaging pilot: a pneumonia detector on DICOM chest X-rays."
    ),
    ehr: bool = typer.Option(
        False, "--ehr", help="The heart hospitals from FHIR: OMOP stores, consent, cohort spec."
    ),
) -> None:
    """Run a federated study across four hospitals over mTLS on loopback and report it: the
    UCI Heart Disease hospitals (from CSV, or with --ehr from FHIR through OMOP under patient
    consent), or with --imaging chest X-rays as DICOM files."""
    from pathlib import Path

    where = Path(workdir) if workdir else None
    if ehr:
        from medfed.cli.demo_ehr import run_ehr_demo

        run_ehr_demo(Path(out), rounds, where)
        return
    if imaging:
        from medfed.cli.demo_imaging import run_imaging_demo

        run_imaging_demo(Path(out), rounds, where)
        return
    from medfed.cli.demo import run_demo  # heavy (torch, sklearn): only when asked for

    run_demo(Path(out), rounds, where)


def main() -> None:
    root()


if __name__ == "__main__":
    main()
