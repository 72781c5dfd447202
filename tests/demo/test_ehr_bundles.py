from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from medfed.data.heart_disease import heart_disease_centres
from medfed.data.omop.spec import load_spec
from medfed.demo.ehr import codes
from medfed.demo.ehr.bundles import HOSPITAL_FILES, VISIT_DATE, hospital_rows, write_heart_bundles
from medfed.demo.ehr.codes import HEART_SPEC, HEART_VOCABULARY


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_heart_bundles(tmp_path_factory.mktemp("fhir"))


def resources_of(path: Path) -> list[dict[str, object]]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    assert bundle["type"] == "transaction"
    return [entry["resource"] for entry in bundle["entry"]]


def test_one_bundle_per_uci_line_in_file_order(written: dict[str, list[Path]]) -> None:
    for hospital, paths in written.items():
        assert len(paths) == len(hospital_rows(hospital))
        ids = [p.stem for p in paths]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert sum(len(p) for p in written.values()) == 920


def test_complete_rows_match_the_csv_path_count(written: dict[str, list[Path]]) -> None:
    centres = heart_disease_centres()
    for hospital in HOSPITAL_FILES:
        complete = [
            line
            for line, row in hospital_rows(hospital)
            if all(row[c] != "?" for c in ("age", "sex", "cp", "trestbps", "chol", "fbs",
                                          "restecg", "thalach", "exang", "oldpeak"))
        ]  # fmt: skip
        assert len(complete) == centres[hospital].rows


def test_missing_values_have_no_resource_and_ages_are_exact(
    written: dict[str, list[Path]],
) -> None:
    rows = dict(hospital_rows("va_long_beach"))
    paths = {int(p.stem[-12:]): p for p in written["va_long_beach"]}
    line, row = next((n, r) for n, r in rows.items() if r["chol"] == "?" and r["num"] != "0")
    found = resources_of(paths[line])
    codes_seen = {
        c["code"] for r in found if r["resourceType"] == "Observation" for c in r["code"]["coding"]
    }
    assert "2093-3" not in codes_seen
    patient = found[0]
    born = dt.date.fromisoformat(str(patient["birthDate"]))
    age = (
        VISIT_DATE.year - born.year - ((VISIT_DATE.month, VISIT_DATE.day) < (born.month, born.day))
    )
    assert age == float(row["age"])
    conditions = [r for r in found if r["resourceType"] == "Condition"]
    assert codes.CORONARY_DISEASE.code in json.dumps(conditions)


def test_bundles_validate_as_fhir_r4(written: dict[str, list[Path]]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    for paths in written.values():
        for path in paths[:15]:
            Bundle.model_validate_json(path.read_bytes())


def test_vocabulary_folder_matches_the_codes_and_invents_no_standard_id() -> None:
    with (HEART_VOCABULARY / "CONCEPT.csv").open(encoding="utf-8", newline="") as handle:
        concepts = {int(r["concept_id"]): r for r in csv.DictReader(handle, delimiter="\t")}
    for code in (*codes.STANDARD, *codes.LOCAL):
        row = concepts[code.concept_id]
        assert (row["concept_code"], row["domain_id"]) == (code.code, code.domain)
    for concept_id, row in concepts.items():
        local = row["vocabulary_id"] in (codes.LOCAL_VOCABULARY, "Vocabulary")
        assert local == (concept_id >= 2_000_000_000)
    # the four standard ids are Eunomia's (SOURCES.md): the codes they carry there
    assert {c.concept_id: c.code for c in codes.STANDARD} == {
        3004249: "8480-6",
        3027114: "2093-3",
        4296597: "76746007",
        317576: "53741008",
    }


def test_heart_spec_gives_the_csv_columns() -> None:
    spec = load_spec(HEART_SPEC)
    assert spec.columns == next(iter(heart_disease_centres().values())).features
    used = {cid for item in spec.concept_sets for cid in item.concepts}
    assert used <= {c.concept_id for c in (*codes.STANDARD, *codes.LOCAL)}
