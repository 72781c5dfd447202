"""Import an OMOP CDM CSV export (a hospital that already has an OMOP CDM), e.g. Eunomia's zips.

One CSV per CDM table, from a folder or a zip: file names are matched case-blind (``PERSON.csv``,
``person.csv``), macOS resource forks (``__MACOSX/``, ``._*``) are ignored, and so is any file
that names no CDM table. Rows are streamed in batches and upserted by primary key, so importing
the same export twice leaves one copy; each table is committed on its own.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TextIO

from medfed.data.omop.bulk import batches, insert_rows
from medfed.data.omop.csv_rows import read_rows
from medfed.data.omop.store import OmopStore, cdm_metadata
from medfed.errors import EtlError

log = logging.getLogger(__name__)

_TextOpener = Callable[[str], TextIO]


def import_cdm_csv(store: OmopStore, source: Path) -> dict[str, int]:
    """Load every CDM table CSV in ``source`` (a folder or a .zip); rows read per table."""
    if not source.exists():
        raise EtlError(f"{source}: no such file or folder")
    imported: dict[str, int] = {}
    with _opener(source) as (names, open_text):
        for table_name, member in names.items():
            table = store.table(table_name)
            with open_text(member) as stream, store.begin() as conn:
                imported[table_name] = sum(
                    insert_rows(conn, table, batch, upsert=True)
                    for batch in batches(read_rows(stream, table, f"{source}:{member}"))
                )
            log.info("imported %s rows into %s", imported[table_name], table_name)
    if not imported:
        raise EtlError(f"{source}: no CSV file named after an OMOP CDM table (PERSON.csv, ...)")
    return imported


def _table_of(name: str) -> str | None:
    path = PurePosixPath(name)
    if "__MACOSX" in path.parts or path.name.startswith("._") or path.suffix.lower() != ".csv":
        return None
    stem = path.stem.lower()
    return stem if stem in cdm_metadata().tables else None


@contextmanager
def _opener(source: Path) -> Iterator[tuple[dict[str, str], _TextOpener]]:
    if source.is_dir():
        members = {p.name: p.name for p in sorted(source.iterdir()) if p.is_file()}
        yield _by_table(members), lambda name: (source / name).open(encoding="utf-8", newline="")
        return
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise EtlError(f"{source}: neither a folder nor a zip file ({exc})") from exc
    with archive:
        members = {info.filename: info.filename for info in archive.infolist() if not info.is_dir()}

        def open_member(name: str) -> TextIO:
            return io.TextIOWrapper(archive.open(name), encoding="utf-8", newline="")

        yield _by_table(members), open_member


def _by_table(members: dict[str, str]) -> dict[str, str]:
    tables: dict[str, str] = {}
    for name in sorted(members):
        table = _table_of(name)
        if table is not None:
            if table in tables:
                raise EtlError(f"two files for table {table}: {tables[table]} and {name}")
            tables[table] = name
    return tables
