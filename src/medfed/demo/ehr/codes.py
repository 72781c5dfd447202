"""The codes the heart hospitals' FHIR records carry, and the OMOP concepts they map to.

Standard concepts are used only where the public Eunomia Synthea27Nj CONCEPT table (OHDSI,
CDM 5.4) holds the code, and their ids are copied from it; everything else is a *local* concept
in a site-local vocabulary ``MedFed Heart`` with ids from 2,000,100,001 up (OHDSI reserves ids
>= 2,000,000,000 for local concepts, which never collide with Athena's). No standard concept id is
invented. The vocabulary ships in Athena's layout under
``medfed/data/builtin/heart_ehr/vocabulary`` (see its SOURCES.md) and is loaded with
``load_vocabulary`` like a steward's own Athena download.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
LOCAL_SYSTEM = "https://medfed.org/fhir/heart"
LOCAL_VOCABULARY = "MedFed Heart"

_BUILTIN = Path(str(resources.files("medfed.data").joinpath("builtin", "heart_ehr")))
HEART_SPEC = _BUILTIN / "heart.toml"
"""The heart study's cohort/feature spec (package data)."""
HEART_VOCABULARY = _BUILTIN / "vocabulary"
"""The Athena-layout folder with the concepts the heart bundles use."""


@dataclass(frozen=True)
class Code:
    """A FHIR coding and the OMOP concept it stands for."""

    system: str
    code: str
    display: str
    concept_id: int
    domain: str
    concept_class: str = "Clinical Observation"

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}

    def codeable(self) -> dict[str, object]:
        return {"coding": [self.coding()], "text": self.display}


def _local(number: int, code: str, display: str, domain: str, klass: str) -> Code:
    return Code(LOCAL_SYSTEM, code, display, 2_000_100_000 + number, domain, klass)


# Standard concepts, ids from Eunomia's CONCEPT.csv.
SYSTOLIC_BP = Code(LOINC, "8480-6", "Systolic blood pressure", 3004249, "Measurement")
CHOLESTEROL = Code(
    LOINC,
    "2093-3",
    "Cholesterol [Mass/volume] in Serum or Plasma",
    3027114,
    "Measurement",
    "Lab Test",
)
STRESS_TEST = Code(
    SNOMED, "76746007", "Cardiovascular stress testing", 4296597, "Procedure", "Procedure"
)
CORONARY_DISEASE = Code(
    SNOMED, "53741008", "Coronary arteriosclerosis", 317576, "Condition", "Clinical Finding"
)
BP_PANEL = (LOINC, "85354-9", "Blood pressure panel with all children optional")
"""The panel that carries systolic pressure as a component (FHIR's vital-signs profile);
only its component is a feature."""

# Local concepts: UCI attributes without a public code a Eunomia-sized vocabulary holds.
MAX_HEART_RATE = _local(
    1,
    "max-heart-rate",
    "Maximum heart rate achieved in exercise test",
    "Measurement",
    "Clinical Observation",
)
ST_DEPRESSION = _local(
    2,
    "st-depression",
    "ST depression induced by exercise relative to rest",
    "Measurement",
    "Clinical Observation",
)
FASTING_SUGAR_HIGH = _local(
    3, "fbs-gt-120", "Fasting blood sugar > 120 mg/dL", "Measurement", "Clinical Observation"
)
EXERCISE_ANGINA = _local(
    4, "exercise-angina", "Exercise induced angina", "Measurement", "Clinical Observation"
)
RESTING_ECG = _local(
    5, "resting-ecg", "Resting electrocardiographic result", "Measurement", "Clinical Observation"
)
CHEST_PAIN = {
    1: _local(
        11, "cp-typical-angina", "Chest pain: typical angina", "Condition", "Clinical Finding"
    ),
    2: _local(
        12, "cp-atypical-angina", "Chest pain: atypical angina", "Condition", "Clinical Finding"
    ),
    3: _local(
        13, "cp-non-anginal", "Chest pain: non-anginal pain", "Condition", "Clinical Finding"
    ),
    4: _local(14, "cp-asymptomatic", "Chest pain: asymptomatic", "Condition", "Clinical Finding"),
}
ECG_RESULT = {
    0: _local(21, "ecg-normal", "Resting ECG normal", "Meas Value", "Answer"),
    1: _local(22, "ecg-st-t-abnormal", "Resting ECG ST-T wave abnormality", "Meas Value", "Answer"),
    2: _local(
        23,
        "ecg-lvh-estes",
        "Resting ECG probable or definite left ventricular hypertrophy by Estes' criteria",
        "Meas Value",
        "Answer",
    ),
}
YES = _local(31, "yes", "Yes", "Meas Value", "Answer")
NO = _local(32, "no", "No", "Meas Value", "Answer")

STANDARD = (SYSTOLIC_BP, CHOLESTEROL, STRESS_TEST, CORONARY_DISEASE)
LOCAL = (
    MAX_HEART_RATE,
    ST_DEPRESSION,
    FASTING_SUGAR_HIGH,
    EXERCISE_ANGINA,
    RESTING_ECG,
    *CHEST_PAIN.values(),
    *ECG_RESULT.values(),
    YES,
    NO,
)
