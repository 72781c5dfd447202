"""Small hand-made FHIR R4 bundles for the ETL tests, and the Synthea copies' location."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from medfed.data.omop.store import OmopStore

SYNTHEA = Path(__file__).with_name("synthea_r4")
LIZ = SYNTHEA / "Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": "female",
        "birthDate": "1960-04-02",
        **extra,
    }


def encounter(eid: str, pid: str, start: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "class": {"code": "AMB"},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "period": {"start": start, "end": end},
    }


def condition(cid: str, pid: str, code: str, onset: str = "2010-01-01") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "onsetDateTime": onset,
    }


def observation(
    oid: str, pid: str, system: str, code: str, value: float, unit: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "effectiveDateTime": "2011-05-06T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def write(path: Path, content: dict[str, Any] | str) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def hand_count(path: Path) -> dict[str, int]:
    """Rows each CDM table should get from one Synthea bundle, counted from its JSON.

    A blood-pressure panel (an Observation with components and no value of its own) gives one
    row per component; every other Observation one row, in measurement or observation.
    """
    resources = [entry["resource"] for entry in json.loads(path.read_text())["entry"]]

    def count(kind: str) -> int:
        return sum(1 for r in resources if r["resourceType"] == kind)

    observations = sum(
        len(r["component"]) if r.get("component") and "valueQuantity" not in r else 1
        for r in resources
        if r["resourceType"] == "Observation"
    )
    return {
        "person": count("Patient"),
        "death": sum(1 for r in resources if "deceasedDateTime" in r),
        "visit_occurrence": count("Encounter"),
        "observation_period": 1 if count("Encounter") else 0,
        "condition_occurrence": count("Condition"),
        "procedure_occurrence": count("Procedure"),
        "drug_exposure": count("MedicationRequest") + count("Immunization"),
        "measurement+observation": observations,
        "care_site": count("Organization"),
        "provider": count("Practitioner"),
    }


def select_rows(store: OmopStore, query: str) -> list[tuple[object, ...]]:
    """Run a plain SQL query whose ``FROM <table>`` names CDM tables, in the store's schema."""
    if store.schema:
        query = query.replace("FROM ", f'FROM "{store.schema}".')
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query))]
