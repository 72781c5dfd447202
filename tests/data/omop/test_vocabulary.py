from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from medfed.data.fhir import load_bundles
from medfed.data.omop.store import OmopStore
from medfed.data.omop.vocabulary import (
    ConceptMapper,
    install_builtin_vocabulary,
    load_vocabulary,
)
from medfed.errors import EtlError
from tests.data.fhir.bundles import bundle, observation, patient, select_rows, write

LAB = "http://hospital.example/lab"


def _athena(folder: Path, name: str, *lines: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


def _steward_folder(folder: Path) -> Path:
    """A site's own additions in Athena's layout: tabs, no quoting, YYYYMMDD dates."""
    _athena(
        folder,
        "vocabulary.csv",  # lower case: Athena's names are matched case-blind
        "vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\t"
        "vocabulary_concept_id",
        f"HOSP_LAB\tOur lab codes\t{LAB}\t2026\t0",
    )
    _athena(
        folder,
        "CONCEPT.csv",
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\t"
        "concept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason",
        '3036277\tBody height "standing"\tMeasurement\tLOINC\tClinical Observation\tS\t8302-2\t'
        "19700101\t20991231\t",
    )
    _athena(
        folder,
        "SOURCE_TO_CONCEPT_MAP.csv",
        "source_code\tsource_concept_id\tsource_vocabulary_id\tsource_code_description\t"
        "target_concept_id\ttarget_vocabulary_id\tvalid_start_date\tvalid_end_date\tinvalid_reason",
        "HT\t0\tHOSP_LAB\tHeight, local code\t3036277\tLOINC\t20200101\t20991231\t",
    )
    return folder


def test_the_builtin_subset_installs_and_installing_again_adds_nothing(
    omop_store: OmopStore,
) -> None:
    first = install_builtin_vocabulary(omop_store)
    second = install_builtin_vocabulary(omop_store)

    counts = omop_store.row_counts()
    assert first == second == {
        "concept": 2301, "concept_relationship": 2232, "domain": 14, "vocabulary": 10
    }  # fmt: skip
    assert counts["concept"] == 2301 and counts["concept_relationship"] == 2232
    names = select_rows(
        omop_store,
        "SELECT concept_id, concept_name FROM concept WHERE concept_id IN (0, 8507, 8532, 32817) "
        "ORDER BY 1",
    )
    assert names == [(0, "No matching concept"), (8507, "MALE"), (8532, "FEMALE"), (32817, "EHR")]


def test_a_steward_folder_adds_to_the_vocabulary_and_maps_local_codes(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    install_builtin_vocabulary(omop_store)

    loaded = load_vocabulary(omop_store, _steward_folder(tmp_path / "athena"))

    assert loaded == {"concept": 1, "source_to_concept_map": 1, "vocabulary": 1}
    counts = omop_store.row_counts()
    assert counts["concept"] == 2301 and counts["vocabulary"] == 11  # upserted, not replaced
    assert select_rows(
        omop_store, "SELECT concept_name FROM concept WHERE concept_id = 3036277"
    ) == [
        ('Body height "standing"',)  # no quoting in Athena's files: the quotes are the name's
    ]
    with omop_store.engine.connect() as conn:
        mapper = ConceptMapper.for_store(conn, omop_store)
        mapper.prefetch(conn, omop_store, [("HOSP_LAB", "HT"), ("HOSP_LAB", "WT")])
    assert mapper.vocabulary_id(LAB) == "HOSP_LAB"
    assert mapper.match("HOSP_LAB", "HT").concept_id == 3036277
    assert mapper.match("HOSP_LAB", "HT").domain_id == "Measurement"
    assert not mapper.match("HOSP_LAB", "WT").mapped

    path = write(
        tmp_path / "b.json", bundle(patient("p"), observation("o", "p", LAB, "HT", 1.7, "m"))
    )
    assert load_bundles(omop_store, [path]).refused == ()
    assert select_rows(
        omop_store, "SELECT measurement_concept_id, measurement_source_value FROM measurement"
    ) == [(3036277, "HT")]


def test_a_folder_without_vocabulary_files_is_refused(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a vocabulary")
    with pytest.raises(EtlError, match="no vocabulary file found"):
        load_vocabulary(omop_store, tmp_path)
    _athena(tmp_path, "CONCEPT.csv", "concept_id\tconcept_name", "1\tx")
    with pytest.raises(EtlError, match=r"CONCEPT\.csv: no column\(s\) domain_id"):
        load_vocabulary(omop_store, tmp_path)
    with omop_store.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(omop_store.table("concept"))
            ).scalar()
            == 0
        )
