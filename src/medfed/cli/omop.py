"""``medfed node omop``: the hospital's OMOP CDM store (data steward)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medfed.cli.common import err, medfed_errors, out

if TYPE_CHECKING:  # SQLAlchemy and the CDM load in the commands, not with ``medfed --help``
    from medfed.data.fhir import LoadReport, QualityReport
    from medfed.data.omop.store import OmopStore

app = typer.Typer(
    help="The OMOP CDM store: create it, load its vocabulary and FHIR exports (data steward).",
    no_args_is_help=True,
)
vocabulary_app = typer.Typer(help="The OMOP vocabulary (Athena download).", no_args_is_help=True)
app.add_typer(vocabulary_app, name="vocabulary")

ConfigOption = Annotated[Path, typer.Option(help="Node TOML config (`medfed node init`).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
UNMAPPED_SHOWN = 20


@contextmanager
def _store(config: Path) -> Iterator[OmopStore]:
    from medfed.data.omop.store import open_store
    from medfed.node.config import load_node_config

    with medfed_errors():
        node = load_node_config(config)
        store = open_store(node.omop_location, node.omop_schema)
        try:
            yield store
        finally:
            store.close()


@app.command()
def init(config: ConfigOption) -> None:
    """Create the CDM tables (if missing) and install the built-in vocabulary subset."""
    from medfed.data.fhir.keys import create_key_table
    from medfed.data.omop.vocabulary import install_builtin_vocabulary

    with _store(config) as store:
        store.create()
        create_key_table(store)
        loaded = install_builtin_vocabulary(store)
    where = f"schema {store.schema}" if store.schema else str(store.engine.url.database)
    out.print(f"OMOP CDM ready in {escape(where)}; built-in vocabulary: {_counts(loaded)}")


@vocabulary_app.command("load")
def vocabulary_load(
    directory: Annotated[
        Path, typer.Argument(help="Athena download folder (CONCEPT.csv, ...).", file_okay=False)
    ],
    config: ConfigOption,
) -> None:
    """Upsert an Athena vocabulary download (streamed; adds to what is there)."""
    from medfed.data.omop.vocabulary import load_vocabulary

    with _store(config) as store:
        store.create()
        loaded = load_vocabulary(store, directory)
    out.print(f"vocabulary loaded: {_counts(loaded)}", highlight=False)


@app.command("load-fhir")
def load_fhir(
    paths: Annotated[list[Path], typer.Argument(help="FHIR R4 bundle files or folders of them.")],
    config: ConfigOption,
    validate: Annotated[
        bool, typer.Option("--validate", help="Check each bundle against the FHIR R4B models.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Load FHIR R4 bundles into the CDM, then print the data-quality report.

    Exit code 1 when a bundle was refused (the others are loaded).
    """
    from medfed.data.fhir import load_bundles, quality_report

    with _store(config) as store:
        store.create()
        report = load_bundles(store, paths, validate=validate)
        quality = quality_report(store)
    if as_json:
        out.print_json(json.dumps({"load": report.to_json(), "quality": quality.to_json()}))
    else:
        _print_load(report)
        _print_quality(quality)
    if report.refused:
        raise typer.Exit(code=1)


@app.command()
def report(config: ConfigOption, as_json: JsonOption = False) -> None:
    """The data-quality report: rows, mapping rate per domain, unmapped codes, coverage."""
    from medfed.data.fhir import quality_report

    with _store(config) as store:
        store.create()  # an empty report rather than a missing-table error before `init`
        quality = quality_report(store)
    if as_json:
        out.print_json(json.dumps(quality.to_json()))
    else:
        _print_quality(quality)


@app.command("import-csv")
def import_csv(
    source: Annotated[Path, typer.Argument(help="A CDM CSV export: a folder or a .zip.")],
    config: ConfigOption,
) -> None:
    """Import an OMOP CDM CSV export (e.g. Eunomia), upserting by primary key."""
    from medfed.data.omop.csv_import import import_cdm_csv

    with _store(config) as store:
        store.create()
        imported = import_cdm_csv(store, source)
    out.print(f"imported: {_counts(imported)}", highlight=False)


def _print_load(report: LoadReport) -> None:
    out.print(
        f"loaded {len(report.loaded)} bundle(s), {sum(report.resources.values())} resources "
        f"({report.mapped_resources} of mapped types), {sum(report.rows.values())} rows; "
        f"refused {len(report.refused)}",
        highlight=False,
    )
    for refusal in report.refused:
        err.print(f"[red]refused[/red] {escape(refusal.reason)}", highlight=False)


def _print_quality(quality: QualityReport) -> None:
    rows = Table("table", "rows", title="rows per table")
    for name, count in quality.rows.items():
        if count:
            rows.add_row(name, str(count))
    out.print(rows)
    mapping = Table("domain", "table", "rows", "standard concept", "rate", title="mapping rate")
    for domain in quality.mapping:
        rate = "-" if domain.rate is None else f"{domain.rate:.1%}"
        mapping.add_row(domain.domain, domain.table, str(domain.rows), str(domain.mapped), rate)
    out.print(mapping)
    shown = quality.unmapped[:UNMAPPED_SHOWN]
    title = f"unmapped source codes ({len(shown)} of {len(quality.unmapped)}, most frequent first)"
    unmapped = Table("domain", "vocabulary", "code", "rows", title=title)
    for code in shown:
        unmapped.add_row(code.domain, escape(code.vocabulary), escape(code.code), str(code.count))
    out.print(unmapped)
    out.print(
        f"persons: {quality.persons}, without observation period: "
        f"{quality.persons_without_observation_period}",
        highlight=False,
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "nothing"
