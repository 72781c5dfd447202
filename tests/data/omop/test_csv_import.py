from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from medfed.data.fhir import quality_report
from medfed.data.omop.csv_import import import_cdm_csv
from medfed.data.omop.store import OmopStore
from medfed.errors import EtlError

EUNOMIA = Path(__file__).with_name("eunomia") / "Synthea27Nj_5.4.zip"
EUNOMIA_ROWS = {  # the data rows its SOURCES.md lists for every non-empty table
    "person": 28,
    "observation_period": 28,
    "visit_occurrence": 1791,
    "visit_detail": 1791,
    "condition_occurrence": 470,
    "condition_era": 469,
    "drug_exposure": 883,
    "procedure_occurrence": 1649,
    "measurement": 10040,
    "observation": 8099,
    "death": 3,
    "device_exposure": 1,
    "provider": 67,
    "concept": 2294,
    "concept_relationship": 266588,
    "vocabulary": 1,
    "cdm_source": 1,
}


def test_the_eunomia_export_imports_with_the_row_counts_of_its_sources(
    omop_store: OmopStore,
) -> None:
    imported = import_cdm_csv(omop_store, EUNOMIA)

    counts = {table: n for table, n in omop_store.row_counts().items() if n}
    assert counts == EUNOMIA_ROWS
    assert {table: n for table, n in imported.items() if n} == EUNOMIA_ROWS
    assert "care_site" in imported  # the real CARE_SITE.csv (empty), not __MACOSX/._CARE_SITE.csv
    report = quality_report(omop_store)
    assert report.persons == 28 and report.persons_without_observation_period == 0


def test_a_folder_imports_case_blind_and_importing_again_keeps_one_copy(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    with zipfile.ZipFile(EUNOMIA) as archive:
        (tmp_path / "person.csv").write_bytes(archive.read("PERSON.csv"))
        (tmp_path / "Death.CSV").write_bytes(archive.read("DEATH.csv"))
    (tmp_path / "readme.csv").write_text("not,a,table\n")

    first = import_cdm_csv(omop_store, tmp_path)
    second = import_cdm_csv(omop_store, tmp_path)

    assert first == second == {"death": 3, "person": 28}
    counts = omop_store.row_counts()
    assert counts["person"] == 28 and counts["death"] == 3


def test_what_is_no_cdm_export_is_refused(omop_store: OmopStore, tmp_path: Path) -> None:
    with pytest.raises(EtlError, match="no CSV file named after an OMOP CDM table"):
        import_cdm_csv(omop_store, tmp_path)
    (tmp_path / "x.zip").write_text("not a zip")
    with pytest.raises(EtlError, match="neither a folder nor a zip"):
        import_cdm_csv(omop_store, tmp_path / "x.zip")
