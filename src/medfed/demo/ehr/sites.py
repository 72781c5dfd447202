"""Each heart hospital's node state as its data steward would leave it before a study.

Per site: an OMOP store (the node config's default embedded file, or a PostgreSQL schema),
the vocabulary (built-in subset + the heart demo's local concepts), the hospital's FHIR bundles
loaded through the ETL, consent recorded for a study when asked (every patient but the ones
withheld), and the heart spec registered as the node's dataset.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medfed.data.omop.store import DEFAULT_SCHEMA, EMBEDDED_FILE, OmopStore, open_store
from medfed.demo.ehr.bundles import write_heart_bundles
from medfed.demo.ehr.codes import HEART_SPEC, HEART_VOCABULARY
from medfed.errors import DatasetError


@dataclass(frozen=True)
class PreparedSite:
    """What a site holds after :func:`prepare_sites`: where its store is, who is in it."""

    site: str
    omop_store: str
    """What the node config's ``omop_store`` must say ("" = the default file in state_dir)."""
    omop_schema: str
    patients: tuple[str, ...]
    """FHIR Patient ids (= ``person_source_value``) loaded, in file order."""
    withheld: tuple[str, ...]
    """Patients without consent to the study (empty when no study was named)."""
    rows: int
    spec_sha256: str


def prepare_sites(
    root: Path,
    sites: Mapping[str, Path],
    *,
    dataset: str = "heart",
    consent_study: str = "",
    withhold: Mapping[str, Sequence[str]] | None = None,
    postgres_url: str = "",
    schema_prefix: str = "heart",
    now: dt.datetime | None = None,
) -> dict[str, PreparedSite]:
    """Prepare the state dirs in ``sites`` (heart hospital key -> node state dir).

    FHIR bundles are written under ``root/fhir``. Each site's OMOP store is the embedded file
    the node config defaults to, or, with ``postgres_url``, schema ``<schema_prefix>_<site>`` there.
    With ``consent_study``, the study is enabled and every patient consents except those in
    ``withhold[site]``, and the dataset reads through that study's consent.
    """
    from medfed.data.fhir import load_bundles
    from medfed.data.omop.vocabulary import install_builtin_vocabulary, load_vocabulary
    from medfed.data.registry import DatasetRegistry

    bundles = write_heart_bundles(root / "fhir", tuple(sites))
    spec_copy = root / "heart.toml"  # the steward's copy, pinned by hash at registration
    shutil.copyfile(HEART_SPEC, spec_copy)
    prepared = {}
    for site, state_dir in sites.items():
        location = postgres_url or str(state_dir / EMBEDDED_FILE)
        schema = f"{schema_prefix}_{site}" if postgres_url else DEFAULT_SCHEMA
        store = open_store(location, schema)
        try:
            store.create()
            install_builtin_vocabulary(store)
            load_vocabulary(store, HEART_VOCABULARY)
            report = load_bundles(store, bundles[site])
            if report.refused:
                first = "; ".join(f"{r.path.name}: {r.reason}" for r in report.refused[:3])
                raise DatasetError(f"{site}: {len(report.refused)} bundles refused: {first}")
            patients = tuple(path.stem for path in bundles[site])
            withheld = tuple(withhold.get(site, ()) if withhold else ())
            if consent_study:
                _record_consent(store, consent_study, patients, withheld, now)
        finally:
            store.close()
        entry = DatasetRegistry(state_dir).add_omop(
            dataset,
            spec_copy,
            location=location,
            schema=schema,
            consent_study=consent_study,
            now=time.time(),
        )
        prepared[site] = PreparedSite(
            site=site,
            omop_store=postgres_url,
            omop_schema=schema,
            patients=patients,
            withheld=withheld if consent_study else (),
            rows=entry.rows,
            spec_sha256=entry.sha256,
        )
    return prepared


def _record_consent(
    store: OmopStore,
    study: str,
    patients: Sequence[str],
    withheld: Sequence[str],
    now: dt.datetime | None,
) -> None:
    from medfed.data.consent import Consents

    unknown = sorted(set(withheld) - set(patients))
    if unknown:
        raise DatasetError(f"withheld patients not in this hospital: {unknown[:3]}")
    consents = Consents(store)
    consents.create()
    consents.enable(study)
    at = now or dt.datetime.now(dt.UTC)
    kept = [p for p in patients if p not in set(withheld)]
    consents.grant(study, kept, by="demo steward", at=at, source="demo")
