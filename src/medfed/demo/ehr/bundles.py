"""The four UCI Heart Disease hospitals as FHIR R4: one transaction Bundle per patient.

Every row of each centre's UCI file becomes a patient seen once, on a fixed visit date, for an
exercise stress test: a Patient (sex, and a birth date that makes the UCI age exact on that day),
an ambulatory Encounter, the stress-test Procedure (the cohort's entry event), one Observation per
measured attribute, a chest-pain Condition, and the angiographic diagnosis (coronary
arteriosclerosis, the outcome) when UCI's ``num`` is above 0.

A value UCI records as ``?`` gets no resource at all, as in an EHR where the test was not done,
so the cohort spec's ``missing = "drop"`` removes exactly the rows the CSV path drops. slope, ca and
thal, which the CSV path never reads, are not written.

Patient ids are UUID-shaped (as in Synthea bundles: ``fullUrl`` = ``urn:uuid:`` + id) and sort in
file order within a hospital (``<hospital>-0000-8000-8000-<line>``), so the matrix built in
person-source-value order has the CSV path's row order, and its seeded split the same rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

from medfed.demo.ehr import codes
from medfed.errors import DatasetError

VISIT_DATE = dt.date(1988, 6, 15)
"""The stress test's day for every patient: the index date ages are counted to."""
_VISIT_TIME = "T09:00:00+00:00"
HOSPITAL_FILES: dict[str, str] = {
    "cleveland": "processed.cleveland.data",
    "hungary": "processed.hungarian.data",
    "switzerland": "processed.switzerland.data",
    "va_long_beach": "processed.va.data",
}
"""The UCI files of ``medfed.data.heart_disease``'s centres, by the same keys."""
_COLUMNS = (
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
    "num",
)
_MISSING = frozenset({"?", ""})
_KINDS = {  # the third UUID group: which resource of the patient
    "Patient": 0,
    "Encounter": 1,
    "Procedure": 2,
    "Observation/trestbps": 3,
    "Observation/chol": 4,
    "Observation/fbs": 5,
    "Observation/restecg": 6,
    "Observation/thalach": 7,
    "Observation/exang": 8,
    "Observation/oldpeak": 9,
    "Condition/cp": 10,
    "Condition/diagnosis": 11,
}


def write_heart_bundles(out_dir: Path, hospitals: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    """Write ``<out_dir>/<hospital>/<patient id>.json`` for each hospital (default: all four);
    returns the bundle paths by hospital, in file order."""
    chosen = hospitals or tuple(HOSPITAL_FILES)
    out: dict[str, list[Path]] = {}
    for number, hospital in enumerate(HOSPITAL_FILES, start=1):
        if hospital not in chosen:
            continue
        folder = out_dir / hospital
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for line, row in hospital_rows(hospital):
            bundle = patient_bundle(number, line, row)
            path = folder / f"{bundle['entry'][0]['resource']['id']}.json"
            path.write_text(json.dumps(bundle, indent=1), encoding="utf-8")
            paths.append(path)
        out[hospital] = paths
    unknown = sorted(set(chosen) - set(HOSPITAL_FILES))
    if unknown:
        raise DatasetError(f"no heart hospital {unknown}; known: {sorted(HOSPITAL_FILES)}")
    return out


def hospital_rows(hospital: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, cells by UCI column) of every non-empty line of the hospital's file."""
    folder = resources.files("medfed.data").joinpath("builtin", "uci_heart_disease")
    text = folder.joinpath(HOSPITAL_FILES[hospital]).read_text(encoding="ascii")
    rows = []
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not cells:
            continue
        if len(cells) != len(_COLUMNS):
            raise DatasetError(f"{hospital} line {line}: {len(cells)} columns, expected 14")
        rows.append((line, dict(zip(_COLUMNS, (c.strip() for c in cells), strict=True))))
    return rows


def resource_id(hospital_number: int, line: int, kind: str) -> str:
    return f"4d454446-{hospital_number:04x}-8{_KINDS[kind]:03x}-8000-{line:012d}"


def patient_bundle(hospital_number: int, line: int, row: dict[str, str]) -> dict[str, Any]:
    """One patient's transaction Bundle (every resource PUT under its own id: re-sendable)."""
    ids = {kind: resource_id(hospital_number, line, kind) for kind in _KINDS}
    subject = {"reference": f"urn:uuid:{ids['Patient']}"}
    context = {"subject": subject, "encounter": {"reference": f"urn:uuid:{ids['Encounter']}"}}
    when = VISIT_DATE.isoformat() + _VISIT_TIME
    resources_ = [_patient(ids["Patient"], hospital_number, line, row), _encounter(ids, subject)]
    resources_.append(
        {
            "resourceType": "Procedure",
            "id": ids["Procedure"],
            "status": "completed",
            "code": codes.STRESS_TEST.codeable(),
            "performedDateTime": when,
            **context,
        }
    )
    for column, build in _OBSERVATIONS.items():
        value = _number(row[column])
        if value is not None:
            resources_.append(
                {
                    "resourceType": "Observation",
                    "id": ids[f"Observation/{column}"],
                    "status": "final",
                    "effectiveDateTime": when,
                    **context,
                    **build(value),
                }
            )
    cp = _number(row["cp"])
    if cp is not None:
        resources_.append(_condition(ids["Condition/cp"], codes.CHEST_PAIN[int(cp)], context, when))
    num = _number(row["num"])
    if num is not None and num > 0:
        resources_.append(
            _condition(ids["Condition/diagnosis"], codes.CORONARY_DISEASE, context, when)
        )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources_
        ],
    }


def _patient(pid: str, hospital_number: int, line: int, row: dict[str, str]) -> dict[str, Any]:
    hospital = list(HOSPITAL_FILES)[hospital_number - 1]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": f"{codes.LOCAL_SYSTEM}/patient", "value": f"{hospital}-{line}"}],
    }
    sex = _number(row["sex"])
    if sex is not None:
        patient["gender"] = "male" if sex == 1 else "female"
    age = _number(row["age"])
    if age is not None:
        if not age.is_integer():
            raise DatasetError(f"{hospital} line {line}: age {age} is not whole years")
        patient["birthDate"] = VISIT_DATE.replace(year=VISIT_DATE.year - int(age)).isoformat()
    return patient


def _encounter(ids: dict[str, str], subject: dict[str, str]) -> dict[str, Any]:
    when = VISIT_DATE.isoformat() + _VISIT_TIME
    return {
        "resourceType": "Encounter",
        "id": ids["Encounter"],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [codes.STRESS_TEST.codeable()],
        "subject": subject,
        "period": {"start": when, "end": when},
    }


def _condition(cid: str, code: codes.Code, context: dict[str, Any], when: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": code.codeable(),
        "onsetDateTime": when,
        "recordedDate": when,
        **context,
    }


def _quantity(value: float, unit: str) -> dict[str, Any]:
    """Always a JSON decimal with a point (130.0, not 130), as Synthea writes its values: the
    ETL's PostgreSQL batch insert refuses a batch mixing ints and floats in one column."""
    return {
        "value": float(value),
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }


def _measured(code: codes.Code, unit: str) -> Any:
    return lambda v: {"code": code.codeable(), "valueQuantity": _quantity(v, unit)}


def _answer(code: codes.Code, answers: dict[int, codes.Code]) -> Any:
    return lambda v: {"code": code.codeable(), "valueCodeableConcept": answers[int(v)].codeable()}


_OBSERVATIONS = {
    "trestbps": lambda v: {
        "code": {"coding": [dict(zip(("system", "code", "display"), codes.BP_PANEL, strict=True))]},
        "component": [
            {"code": codes.SYSTOLIC_BP.codeable(), "valueQuantity": _quantity(v, "mm[Hg]")}
        ],
    },
    "chol": _measured(codes.CHOLESTEROL, "mg/dL"),
    "fbs": _answer(codes.FASTING_SUGAR_HIGH, {1: codes.YES, 0: codes.NO}),
    "restecg": _answer(codes.RESTING_ECG, codes.ECG_RESULT),
    "thalach": _measured(codes.MAX_HEART_RATE, "/min"),
    "exang": _answer(codes.EXERCISE_ANGINA, {1: codes.YES, 0: codes.NO}),
    "oldpeak": _measured(codes.ST_DEPRESSION, "mm"),
}


def _number(cell: str) -> float | None:
    return None if cell in _MISSING else float(cell)
