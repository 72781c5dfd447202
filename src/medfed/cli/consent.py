"""``medfed node consent``: patients' consent per study, enforced by the database (data steward).

These commands run as the steward (the ``omop_store`` URL of the node config) and show patient
identities; what leaves the hospital is only a study's consented N and log watermark.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medfed.cli.common import err, medfed_errors, out
from medfed.node.config import load_node_config

if TYPE_CHECKING:  # SQLAlchemy loads in the commands, not with ``medfed --help``
    from medfed.data.consent import Consents, ConsentState, PersonRef

app = typer.Typer(
    help="Patient consent per study: grant, revoke, import FHIR Consent, show (data steward).",
    no_args_is_help=True,
)

ConfigOption = Annotated[Path, typer.Option(help="Node TOML config (`medfed node init`).")]
StudyArg = Annotated[str, typer.Argument(help="The study id, as in the study spec.")]
PersonsArg = Annotated[
    list[str], typer.Argument(help="Patients: FHIR Patient ids (person_source_value).")
]
ByIdOption = Annotated[
    bool, typer.Option("--person-id", help="PERSON arguments are CDM person_id numbers.")
]
ByOption = Annotated[str, typer.Option("--by", help="Who records it (default: the OS user).")]
SourceOption = Annotated[str, typer.Option(help="Where the decision comes from, e.g. a form.")]


@contextmanager
def _consents(config: Path) -> Iterator[Consents]:
    from medfed.data.consent import Consents
    from medfed.data.omop.store import open_store

    node = load_node_config(config)
    store = open_store(node.omop_location, node.omop_schema)
    try:
        yield Consents(store)
    finally:
        store.close()


def _refs(persons: list[str], by_id: bool) -> list[PersonRef]:
    if not by_id:
        return list(persons)
    try:
        return [int(person) for person in persons]
    except ValueError:
        raise typer.BadParameter("--person-id takes whole numbers") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _print_state(study: str, state: ConsentState) -> None:
    out.print(
        f"{study}: {state.consented_n} consented, watermark {state.watermark}", highlight=False
    )


@app.command()
def grant(
    study: StudyArg,
    persons: PersonsArg,
    config: ConfigOption,
    by_id: ByIdOption = False,
    by: ByOption = "",
    source: SourceOption = "cli",
) -> None:
    """Record that these patients consent to STUDY (all or nothing)."""
    with medfed_errors(), _consents(config) as consents:
        state = consents.grant(
            study, _refs(persons, by_id), by or getpass.getuser(), _now(), source
        )
    _print_state(study, state)


@app.command()
def revoke(
    study: StudyArg,
    persons: PersonsArg,
    config: ConfigOption,
    by_id: ByIdOption = False,
    by: ByOption = "",
    source: SourceOption = "cli",
) -> None:
    """Record that these patients withdraw from STUDY; the next round no longer reads them."""
    with medfed_errors(), _consents(config) as consents:
        state = consents.revoke(
            study, _refs(persons, by_id), by or getpass.getuser(), _now(), source
        )
    _print_state(study, state)


@app.command("import")
def import_(
    study: StudyArg,
    paths: Annotated[
        list[Path], typer.Argument(help="FHIR R4 Consent resources or Bundles (files, folders).")
    ],
    config: ConfigOption,
    by: ByOption = "",
) -> None:
    """Record the decisions of FHIR Consent resources; exit 1 if any was refused."""
    with medfed_errors(), _consents(config) as consents:
        report = consents.import_fhir(study, paths, by or getpass.getuser(), _now())
    out.print(f"recorded {report.recorded}, refused {len(report.refused)}", highlight=False)
    for refusal in report.refused:
        err.print(
            f"[red]refused[/red] {escape(refusal.name)}: {escape(refusal.reason)}", highlight=False
        )
    _print_state(study, report.state)
    if report.refused:
        raise typer.Exit(code=1)


@app.command()
def show(
    study: StudyArg,
    config: ConfigOption,
    tail: Annotated[int, typer.Option(help="Log entries to list.", min=0)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, watermark and the latest log entries of STUDY (with patient ids: steward only)."""
    with medfed_errors(), _consents(config) as consents:
        consents.create()
        summary = consents.show(study, tail)
    entries = [
        {"seq": e.seq, "person_id": e.person_id, "patient": e.person_source_value,
         "decision": e.decision.value, "at": e.at.isoformat(), "by": e.recorded_by,
         "source": e.source}
        for e in summary.tail
    ]  # fmt: skip
    if as_json:
        document = {"study": study, "granted": summary.granted, "revoked": summary.revoked,
                    "watermark": summary.watermark, "log": entries}  # fmt: skip
        typer.echo(json.dumps(document, indent=2))
        return
    out.print(
        f"{study}: {summary.granted} granted, {summary.revoked} revoked,"
        f" watermark {summary.watermark}",
        highlight=False,
    )
    table = Table("seq", "patient", "decision", "at", "by", "source")
    for entry in entries:
        table.add_row(*(escape(str(entry[key])) for key in
                        ("seq", "patient", "decision", "at", "by", "source")))  # fmt: skip
    out.print(table)


@app.command()
def enable(
    study: StudyArg,
    config: ConfigOption,
    role: Annotated[
        str, typer.Option(help="PostgreSQL login role to create (default: <schema>_read_<study>).")
    ] = "",
    password_file: Annotated[
        Path | None, typer.Option(help="File holding the role's password, if the server asks.")
    ] = None,
) -> None:
    """Let the node read STUDY under consent: its read role and row-level security (PostgreSQL),
    or its filtered views (embedded store)."""
    with medfed_errors(), _consents(config) as consents:
        password = password_file.read_text(encoding="utf-8").strip() if password_file else None
        name = consents.enable(study, role or None, password)
        embedded = consents.store.embedded
    if embedded:
        out.print(f"{study}: consented views in schema {name} (embedded store)", highlight=False)
        return
    out.print(f"{study}: the node reads as role {name}, row-level security on", highlight=False)
