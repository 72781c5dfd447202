from __future__ import annotations

import json
from pathlib import Path

from medfed.data.fhir import load_bundles, quality_report
from medfed.data.omop.store import OmopStore
from medfed.data.omop.vocabulary import install_builtin_vocabulary
from tests.data.fhir.bundles import (
    LOINC,
    SYNTHEA,
    bundle,
    condition,
    encounter,
    observation,
    patient,
    select_rows,
    write,
)


def test_the_report_counts_rows_mapping_unmapped_codes_and_unobserved_persons(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    install_builtin_vocabulary(omop_store)
    write(
        tmp_path / "a.json",
        bundle(
            patient("a"),
            encounter("e1", "a", "2010-01-01T08:00:00Z", "2010-01-01T09:00:00Z"),
            encounter("e2", "a", "2012-03-04T08:00:00Z", "2012-03-05T09:00:00Z"),
            condition("c1", "a", "59621000"),  # mapped
            condition("c2", "a", "38341003"),  # unmapped
            condition("c3", "a", "38341003", onset="2011-01-01"),  # unmapped, same code
            observation("o1", "a", LOINC, "8302-2", 170.0, "cm"),  # mapped
            observation(
                "o2", "a", "http://hospital.example/lab", "X1", 1.0, "mg"
            ),  # unknown system
        ),
    )
    write(tmp_path / "b.json", bundle(patient("b"), condition("c4", "b", "59621000")))

    load_bundles(omop_store, [tmp_path])
    report = quality_report(omop_store)

    assert report.rows["person"] == 2 and report.rows["visit_occurrence"] == 2
    rates = {m.domain: (m.rows, m.mapped) for m in report.mapping}
    assert rates["Condition"] == (4, 2)
    assert rates["Visit"] == (2, 2)
    assert rates["Drug"] == (0, 0)
    assert {m.domain: m.rate for m in report.mapping}["Drug"] is None
    unmapped = [(u.domain, u.vocabulary, u.code, u.count) for u in report.unmapped]
    assert unmapped == [
        ("Condition", "SNOMED", "38341003", 2),
        ("Observation", "http://hospital.example/lab", "X1", 1),  # no lab category: observation
    ]
    assert report.persons == 2
    assert report.persons_without_observation_period == 1  # b has no encounter
    periods = select_rows(
        omop_store,
        "SELECT observation_period_start_date, observation_period_end_date FROM observation_period",
    )
    assert [(str(start), str(end)) for start, end in periods] == [("2010-01-01", "2012-03-05")]
    assert report.to_json()["mapping"][0] == {
        "domain": "Condition", "table": "condition_occurrence", "rows": 4, "mapped": 2, "rate": 0.5
    }  # fmt: skip


def test_synthea_visits_find_their_care_site_and_provider(omop_store: OmopStore) -> None:
    install_builtin_vocabulary(omop_store)

    load_bundles(omop_store, [SYNTHEA])

    encounters = [
        entry["resource"]
        for path in SYNTHEA.glob("*.json")
        for entry in json.loads(path.read_text())["entry"]
        if entry["resource"]["resourceType"] == "Encounter"
    ]
    unattended = sum(1 for e in encounters if not e.get("participant"))  # death certificates

    missing = select_rows(
        omop_store,
        "SELECT count(*) - count(care_site_id), count(*) - count(provider_id) "
        "FROM visit_occurrence",
    )
    assert missing == [(0, unattended)]
    assert unattended == 5
    assert omop_store.row_counts()["care_site"] == 102  # one per Organization, shared by bundles


def test_validation_refuses_what_the_plain_parse_would_load(
    omop_store: OmopStore, tmp_path: Path
) -> None:
    install_builtin_vocabulary(omop_store)
    path = write(tmp_path / "odd.json", bundle(patient("p1", active="maybe")))

    refused = load_bundles(omop_store, [path], validate=True).refused
    loaded = load_bundles(omop_store, [path]).loaded

    assert len(refused) == 1
    assert "invalid FHIR R4 bundle, 1 error(s): entry.0.resource.active" in refused[0].reason
    assert [b.patients for b in loaded] == [("p1",)]
