from __future__ import annotations

import json
from pathlib import Path

from medfed.data.fhir import load_bundles
from medfed.data.omop.store import OmopStore
from medfed.data.omop.vocabulary import install_builtin_vocabulary
from tests.data.fhir.bundles import (
    LIZ,
    LOINC,
    SYNTHEA,
    bundle,
    condition,
    hand_count,
    observation,
    patient,
    select_rows,
    write,
)


def test_every_synthea_bundle_loads(omop_store: OmopStore) -> None:
    install_builtin_vocabulary(omop_store)

    report = load_bundles(omop_store, [SYNTHEA])

    assert report.refused == ()
    assert len(report.loaded) == 18  # 16 patients + Synthea's hospital and practitioner bundles
    counts = omop_store.row_counts()
    assert counts["person"] == 16
    assert counts["death"] == 5  # SOURCES.md: 5 deceased
    assert counts["visit_occurrence"] == 178
    assert counts["condition_occurrence"] == 78
    assert counts["procedure_occurrence"] == 78
    assert counts["drug_exposure"] == 49 + 133  # MedicationRequest + Immunization
    # 1,061 Observations, of which 91 blood-pressure panels become 2 rows each
    assert counts["measurement"] + counts["observation"] == 1061 - 91 + 2 * 91
    assert counts["observation_period"] == 16
    assert report.bytes == sum(p.stat().st_size for p in SYNTHEA.glob("*.json"))


def test_counts_per_table_match_a_hand_count_of_one_bundle(omop_store: OmopStore) -> None:
    install_builtin_vocabulary(omop_store)
    expected = hand_count(LIZ)

    report = load_bundles(omop_store, [LIZ])

    counts = omop_store.row_counts()
    assert report.refused == ()
    for table, n in expected.items():
        if table == "measurement+observation":
            assert counts["measurement"] + counts["observation"] == n
        else:
            assert counts[table] == n, table
    assert expected["person"] == 1 and expected["visit_occurrence"] == 7  # read from the file
    assert select_rows(omop_store, "SELECT person_source_value FROM person") == [
        ("ee9f8dd8-72d2-4769-8020-89e504b1504b",)
    ]


def test_loading_again_changes_nothing_and_a_changed_bundle_replaces_its_patient(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    install_builtin_vocabulary(omop_store)
    other = SYNTHEA / "Tony_Beer_bb8cd3e5-8910-4eea-bbc6-3f64a4a655b8.json"
    load_bundles(omop_store, [LIZ, other])
    query = "SELECT measurement_id, person_id, value_as_number FROM measurement ORDER BY 1"
    first_counts, first_rows = omop_store.row_counts(), select_rows(omop_store, query)

    load_bundles(omop_store, [LIZ, other])
    assert omop_store.row_counts() == first_counts
    assert select_rows(omop_store, query) == first_rows  # same ids, same values

    data = json.loads(LIZ.read_text())
    data["entry"] = [e for e in data["entry"] if e["resource"]["resourceType"] != "Condition"]
    changed = write(tmp_path / "liz_without_conditions.json", data)
    report = load_bundles(omop_store, [changed])

    assert report.refused == ()
    counts = omop_store.row_counts()
    liz_conditions = sum(
        1
        for e in json.loads(LIZ.read_text())["entry"]
        if e["resource"]["resourceType"] == "Condition"
    )
    assert counts["condition_occurrence"] == first_counts["condition_occurrence"] - liz_conditions
    assert counts["person"] == 2
    assert select_rows(omop_store, query) == first_rows  # measurements kept their ids


def test_bad_bundles_are_refused_by_name_and_the_others_load(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    install_builtin_vocabulary(omop_store)
    write(tmp_path / "good.json", bundle(patient("p1"), condition("c1", "p1", "38341003")))
    no_json = write(tmp_path / "truncated.json", '{"resourceType": "Bundle", "entry": [')
    no_bundle = write(tmp_path / "patient.json", patient("p2"))
    stranger = write(
        tmp_path / "stranger.json", bundle(patient("p3"), condition("c3", "nobody", "38341003"))
    )
    undated = condition("c4", "p4", "38341003")
    del undated["onsetDateTime"]
    no_date = write(tmp_path / "undated.json", bundle(patient("p4"), undated))
    odd = condition("c6", "p6", "38341003")
    odd["subject"] = "Patient/p6"  # a string where FHIR has a Reference
    malformed = write(tmp_path / "malformed.json", bundle(patient("p6"), odd))
    # fails inside the database, after the person row went in: two rows with one id
    twice = write(
        tmp_path / "twice.json",
        bundle(patient("p5"), condition("c5", "p5", "38341003"), condition("c5", "p5", "1")),
    )

    report = load_bundles(omop_store, [tmp_path])

    assert [b.path.name for b in report.loaded] == ["good.json"]
    reasons = {r.path.name: r.reason for r in report.refused}
    assert set(reasons) == {
        p.name for p in (no_json, no_bundle, stranger, no_date, malformed, twice)
    }
    assert all(str(tmp_path / name) in reason for name, reason in reasons.items())
    assert "not JSON" in reasons["truncated.json"]
    assert "not a FHIR Bundle" in reasons["patient.json"]
    assert "unknown patient reference 'urn:uuid:nobody'" in reasons["stranger.json"]
    assert "Condition/c4: no date" in reasons["undated.json"]
    assert "a resource is malformed (AttributeError" in reasons["malformed.json"]
    assert "database refused" in reasons["twice.json"]
    assert select_rows(omop_store, "SELECT person_source_value FROM person") == [("p1",)]
    assert omop_store.row_counts()["condition_occurrence"] == 1


def test_a_blood_pressure_panel_lands_as_two_measurements(omop_store: OmopStore) -> None:
    install_builtin_vocabulary(omop_store)
    panels = [
        e["resource"]
        for e in json.loads(LIZ.read_text())["entry"]
        if e["resource"].get("component")
    ]

    load_bundles(omop_store, [LIZ])

    rows = select_rows(
        omop_store,
        "SELECT measurement_source_value, measurement_concept_id, unit_source_value, "
        "unit_concept_id FROM measurement WHERE measurement_source_value IN "
        "('8480-6', '8462-4', '85354-9') ORDER BY 1",
    )
    assert len(panels) == 3  # Liz's bundle, read by eye: three blood-pressure panels
    assert (
        rows
        == [("8462-4", 3012888, "mm[Hg]", 8876)] * 3 + [("8480-6", 3004249, "mm[Hg]", 8876)] * 3
    )
    systolic = [
        c for p in panels for c in p["component"] if c["code"]["coding"][0]["code"] == "8480-6"
    ]
    values = select_rows(
        omop_store,
        "SELECT value_as_number FROM measurement "
        "WHERE measurement_source_value = '8480-6' ORDER BY 1",
    )
    # exact on both stores (NUMERIC on PostgreSQL, DOUBLE on DuckDB: store._portable)
    expected = sorted(float(c["valueQuantity"]["value"]) for c in systolic)
    assert [float(v) for (v,) in values] == expected


def test_codes_map_through_the_vocabulary_and_unmapped_ones_keep_their_source(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    install_builtin_vocabulary(omop_store)
    path = write(
        tmp_path / "codes.json",
        bundle(
            patient("p1"),
            condition("standard", "p1", "59621000"),  # Essential hypertension, standard
            condition("maps-to", "p1", "275272006"),  # non-standard -> Traumatic brain injury
            condition("no-target", "p1", "15777000"),  # in the vocabulary, maps nowhere here
            condition("unknown", "p1", "38341003"),  # not in the shipped subset at all
            observation("o1", "p1", LOINC, "8302-2", 165.1, "cm"),
        ),
    )

    load_bundles(omop_store, [path])

    rows = select_rows(
        omop_store,
        "SELECT condition_source_value, condition_concept_id, condition_source_concept_id "
        "FROM condition_occurrence ORDER BY 1",
    )
    assert rows == [
        ("15777000", 0, 40316773),
        ("275272006", 4132546, 4166590),
        ("38341003", 0, 0),
        ("59621000", 320128, 320128),
    ]
    assert select_rows(
        omop_store, "SELECT measurement_concept_id, unit_concept_id FROM measurement"
    ) == [(3036277, 8582)]


def test_whole_and_decimal_values_of_one_column_load_exactly(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    """FHIR writes 180 and 2.5 alike; an array parameter must not mix int and float."""
    install_builtin_vocabulary(omop_store)  # 2093-3 (total cholesterol): a measurement
    values = [180, 2.5, 151.86292759932016]
    path = write(
        tmp_path / "mixed.json",
        bundle(
            patient("p1"),
            *(
                observation(f"o{i}", "p1", "http://loinc.org", "2093-3", v, "mg/dL")
                for i, v in enumerate(values)
            ),
        ),
    )

    report = load_bundles(omop_store, [path])

    assert not report.refused, report.refused
    rows = select_rows(omop_store, "SELECT value_as_number FROM measurement ORDER BY 1")
    assert [float(v) for (v,) in rows] == sorted(float(v) for v in values)
