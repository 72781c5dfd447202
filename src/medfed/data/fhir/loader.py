"""Load FHIR bundle files into the OMOP store: one transaction per bundle, refusals by name.

Each bundle replaces its patients: their earlier rows go and the bundle's rows come in, under the
ids they had (:mod:`medfed.data.fhir.keys`), so loading the same bundle twice changes nothing and
a corrected export replaces the old one. A bundle that cannot be used (not JSON, not a Bundle, a
resource without what the CDM needs, a reference to a patient the bundle lacks, or invalid
against the R4B models with ``validate``) rolls back alone and is reported with its reason;
the other bundles load.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from medfed.data.fhir.bundle import Bundle, read_bundle
from medfed.data.fhir.keys import ID_COLUMNS, SHARED_TABLES, RowIds, create_key_table, replace_keys
from medfed.data.fhir.mapping import MAPPED_TYPES, BundleMapper, BundleRows
from medfed.data.fhir.people import shared_keys
from medfed.data.omop.bulk import insert_rows
from medfed.data.omop.store import OmopStore
from medfed.data.omop.vocabulary import ConceptMapper
from medfed.errors import EtlError

log = logging.getLogger(__name__)

PATIENT_TABLES = (
    "person",
    "death",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "measurement",
    "observation",
    "drug_exposure",
    "procedure_occurrence",
)
"""The tables a patient's rows are in, all replaced when the patient is loaded again."""

SHARED_BUNDLE_PREFIXES = ("hospitalInformation", "practitionerInformation")
"""Synthea's bundles of Organizations and Practitioners, which patient bundles reference
conditionally: loaded first, so that visits find their care site and provider."""


@dataclass(frozen=True)
class LoadedBundle:
    path: Path
    size: int
    """Bytes read."""
    patients: tuple[str, ...]
    """FHIR Patient ids (= person_source_value)."""
    resources: dict[str, int]
    """Every resource in the bundle by type, mapped or not."""
    rows: dict[str, int]
    """Rows written per CDM table."""


@dataclass(frozen=True)
class RefusedBundle:
    path: Path
    reason: str


@dataclass(frozen=True)
class LoadReport:
    """What a load did: bundles loaded (with counts) and bundles refused (with reasons)."""

    loaded: tuple[LoadedBundle, ...]
    refused: tuple[RefusedBundle, ...]

    @property
    def resources(self) -> dict[str, int]:
        """Resources of the loaded bundles by type."""
        return dict(_sum(bundle.resources for bundle in self.loaded))

    @property
    def mapped_resources(self) -> int:
        """Resources of the types the ETL maps (the others are counted and skipped)."""
        return sum(n for kind, n in self.resources.items() if kind in MAPPED_TYPES)

    @property
    def rows(self) -> dict[str, int]:
        return dict(_sum(bundle.rows for bundle in self.loaded))

    @property
    def bytes(self) -> int:
        return sum(bundle.size for bundle in self.loaded)

    def to_json(self) -> dict[str, Any]:
        return {
            "loaded": [
                {
                    "path": str(b.path),
                    "patients": list(b.patients),
                    "resources": b.resources,
                    "rows": b.rows,
                }
                for b in self.loaded
            ],
            "refused": [{"path": str(r.path), "reason": r.reason} for r in self.refused],
            "resources": self.resources,
            "rows": self.rows,
        }


def load_bundles(store: OmopStore, paths: Sequence[Path], *, validate: bool = False) -> LoadReport:
    """Load bundle files (folders are searched for ``*.json``) into ``store``.

    ``validate`` checks each bundle against the FHIR R4B models first (~50x slower than the
    plain parse) and refuses an invalid one with the validator's summary.
    """
    create_key_table(store)
    loaded: list[LoadedBundle] = []
    refused: list[RefusedBundle] = []
    concepts: ConceptMapper | None = None
    highest: dict[str, int] | None = {} if store.embedded else None  # see RowIds.load
    for path in bundle_files(paths, refused):
        try:
            bundle = read_bundle(path, validate=validate)
            with store.begin() as conn:
                concepts = concepts or ConceptMapper.for_store(conn, store)
                loaded.append(_load(conn, store, bundle, concepts, highest))
        except EtlError as exc:
            refused.append(RefusedBundle(path, _reason(path, str(exc))))
        except sa.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            refused.append(RefusedBundle(path, f"{path}: the database refused it: {detail}"))
    for refusal in refused:
        log.info("refused %s", refusal.reason)
    return LoadReport(tuple(loaded), tuple(refused))


def bundle_files(paths: Iterable[Path], refused: list[RefusedBundle]) -> list[Path]:
    """The files to load: each file given, each ``*.json`` under each folder given, Synthea's
    shared bundles first. A path that does not exist is refused here."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.rglob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            refused.append(RefusedBundle(path, f"{path}: no such file or folder"))
    return sorted(files, key=lambda p: (not p.name.startswith(SHARED_BUNDLE_PREFIXES), str(p)))


def _load(
    conn: sa.Connection,
    store: OmopStore,
    bundle: Bundle,
    concepts: ConceptMapper,
    highest: dict[str, int] | None,
) -> LoadedBundle:
    for resource in bundle.resources:
        if resource["resourceType"] in MAPPED_TYPES and not isinstance(resource.get("id"), str):
            raise EtlError(f"a {resource['resourceType']} has no id")
    patients = [patient["id"] for patient in bundle.of_type("Patient")]
    try:
        ids = RowIds.load(conn, store, patients, shared_keys(bundle), highest)
        earlier = [i for p in patients if (i := ids.lookup("person", p)) is not None]
        rows = BundleRows(ids)
        mapper = BundleMapper(bundle, concepts, rows)
        concepts.prefetch(conn, store, mapper.source_codes())
        mapper.run()
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a malformed resource
        raise EtlError(f"a resource is malformed ({type(exc).__name__}: {exc})") from exc
    _delete_earlier(conn, store, earlier, rows)
    for table, table_rows in rows.tables.items():
        insert_rows(conn, store.table(table), table_rows)
    replace_keys(conn, patients, rows.keys)
    return LoadedBundle(
        path=bundle.path,
        size=bundle.size,
        patients=tuple(patients),
        resources=dict(bundle.counts()),
        rows={table: len(table_rows) for table, table_rows in sorted(rows.tables.items())},
    )


def _delete_earlier(
    conn: sa.Connection, store: OmopStore, person_ids: list[int], rows: BundleRows
) -> None:
    """Remove what an earlier load wrote for these persons, and the shared rows rewritten."""
    if person_ids:
        for name in PATIENT_TABLES:
            table = store.table(name)
            conn.execute(sa.delete(table).where(table.c.person_id.in_(person_ids)))
    for name in SHARED_TABLES:
        column = ID_COLUMNS[name]
        ids = [row[column] for row in rows.tables.get(name, [])]
        if ids:
            table = store.table(name)
            conn.execute(sa.delete(table).where(table.c[column].in_(ids)))


def _reason(path: Path, message: str) -> str:
    return message if message.startswith(str(path)) else f"{path}: {message}"


def _sum(counts: Iterable[dict[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return total
