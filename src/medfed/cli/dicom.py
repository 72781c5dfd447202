"""``medfed node dicom``: de-identify DICOM exports and gate them before registration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medfed.cli.common import err, medfed_errors, out
from medfed.errors import DatasetError

if TYPE_CHECKING:  # pydicom loads in the commands, not with ``medfed --help``
    from medfed.data.dicom.phi import PhiFinding

app = typer.Typer(
    help="DICOM de-identification and the PHI gate (data steward).", no_args_is_help=True
)


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.", exists=True)],
) -> None:
    """List what still identifies a patient in each file; exit 1 if any file is blocked."""
    from medfed.data.dicom.phi import PROFILE, files_under

    out.print(f"profile: {PROFILE}", highlight=False)
    files = files_under(path)
    blocked = sum(_report_file(file) for file in files)
    out.print(f"{len(files)} file(s) checked, {blocked} blocked", highlight=False)
    if blocked:
        raise typer.Exit(code=1)


@app.command()
def deidentify(
    src: Annotated[Path, typer.Argument(help="Folder to read.", exists=True, file_okay=False)],
    dst: Annotated[Path, typer.Argument(help="Folder to write; outside the input folder.")],
) -> None:
    """Apply the Basic Profile to every file under SRC, writing the same tree under DST."""
    from medfed.data.dicom.deidentify import deidentify_tree
    from medfed.data.dicom.phi import PROFILE

    out.print(f"profile: {PROFILE}", highlight=False)
    with medfed_errors():
        report = deidentify_tree(src, dst)
    out.print(
        f"wrote {report.written} file(s) to {escape(str(dst))}, {len(report.failed)} failed",
        highlight=False,
    )
    for path, reason in report.failed:
        err.print(f"[red]failed[/red] {escape(str(path))}: {escape(reason)}", highlight=False)
    if report.failed:
        raise typer.Exit(code=1)


def _report_file(path: Path) -> bool:
    """Print one file's findings; True when the file is blocked (unreadable counts)."""
    from medfed.data.dicom.phi import blocking, check_file

    try:
        findings = check_file(path)
    except DatasetError as exc:
        err.print(f"[red]unreadable[/red] {escape(str(exc))}", highlight=False)
        return True
    stops = blocking(findings)
    verdict = "[red]blocked[/red]" if stops else "[green]passes[/green]"
    out.print(
        f"{escape(str(path))}: {verdict}, {len(stops)} blocking, "
        f"{len(findings) - len(stops)} note(s)",
        highlight=False,
    )
    if findings:
        out.print(_table(findings))
    return bool(stops)


def _table(findings: list[PhiFinding]) -> Table:
    table = Table("tag", "keyword", "finding", "blocks")
    table.columns[1].overflow = "fold"  # a long keyword cut short names no attribute
    for finding in findings:
        table.add_row(
            finding.tag,
            escape(finding.keyword),
            escape(finding.reason),
            "yes" if finding.blocking else "note",
        )
    return table
