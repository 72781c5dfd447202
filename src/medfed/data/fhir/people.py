"""Patients, organizations and practitioners: person, death, care_site and provider rows.

Gender, race and ethnicity are small fixed code sets, mapped here the way OHDSI's dbt-synthea
maps Synthea's (``int__person.sql``): FHIR ``male``/``female`` -> 8507/8532, the US Core race
and ethnicity extensions' OMB categories (CDC Race & Ethnicity codes) -> OMOP Race/Ethnicity.
Anything else is concept 0 with the source value kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medfed.data.fhir.bundle import Bundle, Resource, describe
from medfed.data.fhir.fields import clip, instant
from medfed.errors import EtlError

if TYPE_CHECKING:
    from medfed.data.fhir.mapping import BundleRows

EHR = 32817
GENDER_CONCEPTS = {"male": 8507, "female": 8532}
RACE_CONCEPTS = {"2106-3": 8527, "2054-5": 8516, "2028-9": 8515}
"""CDC race code (OMB category) -> OMOP Race: White, Black or African American, Asian."""
ETHNICITY_CONCEPTS = {"2135-2": 38003563, "2186-5": 38003564}
"""CDC ethnicity code -> OMOP Ethnicity: Hispanic or Latino, Not Hispanic or Latino."""
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
NPI = "http://hl7.org/fhir/sid/us-npi"


def patient_rows(patient: Resource, rows: BundleRows) -> int:
    """Write the person (and death) rows of a Patient; returns its person_id."""
    patient_id = patient.get("id")
    if not patient_id:
        raise EtlError("a Patient has no id (person_source_value needs it)")
    if len(patient_id) > 50:
        raise EtlError(f"{describe(patient)}: id longer than person_source_value's 50 characters")
    born = instant(patient.get("birthDate"))
    if born is None:
        raise EtlError(f"{describe(patient)}: no birthDate")
    gender = patient.get("gender")
    race_code, race_text = _omb_category(patient, "us-core-race")
    ethnicity_code, ethnicity_text = _omb_category(patient, "us-core-ethnicity")
    row = {
        "gender_concept_id": GENDER_CONCEPTS.get(gender or "", 0),
        "year_of_birth": born.year,
        "month_of_birth": born.month,
        "day_of_birth": born.day,
        "birth_datetime": born,
        "race_concept_id": RACE_CONCEPTS.get(race_code or "", 0),
        "ethnicity_concept_id": ETHNICITY_CONCEPTS.get(ethnicity_code or "", 0),
        "person_source_value": patient_id,
        "gender_source_value": clip(gender, 50),
        "gender_source_concept_id": 0,
        "race_source_value": clip(race_text, 50),
        "race_source_concept_id": 0,
        "ethnicity_source_value": clip(ethnicity_text, 50),
        "ethnicity_source_concept_id": 0,
    }
    person_id = rows.add("person", patient_id, row, patient_id)
    died = instant(patient.get("deceasedDateTime"))
    if died is not None:  # deceasedBoolean alone gives no death_date, which the CDM requires
        rows.tables["death"].append(
            {
                "person_id": person_id,
                "death_date": died.date(),
                "death_datetime": died,
                "death_type_concept_id": EHR,
            }
        )
    return person_id


def shared_rows(bundle: Bundle, rows: BundleRows) -> None:
    """care_site rows for the bundle's Organizations, provider rows for its Practitioners."""
    for organization in bundle.of_type("Organization"):
        key = care_site_key(organization)
        site: dict[str, Any] = {
            "care_site_name": clip(organization.get("name"), 255),
            "care_site_source_value": clip(key, 50),
        }
        rows.add("care_site", key, site, None)
    for practitioner in bundle.of_type("Practitioner"):
        key = provider_key(practitioner)
        gender = practitioner.get("gender")
        provider: dict[str, Any] = {
            "provider_name": clip(_human_name(practitioner), 255),
            "npi": clip(_identifier(practitioner, NPI), 20),
            "gender_concept_id": GENDER_CONCEPTS.get(gender or "", 0),
            "gender_source_value": clip(gender, 50),
            "provider_source_value": clip(key, 50),
        }
        rows.add("provider", key, provider, None)


def shared_keys(bundle: Bundle) -> set[tuple[str, str]]:
    """The care sites and providers a bundle defines or names by identifier."""
    keys = {("care_site", care_site_key(r)) for r in bundle.of_type("Organization")}
    keys |= {("provider", provider_key(r)) for r in bundle.of_type("Practitioner")}
    for encounter in bundle.of_type("Encounter"):
        references = [encounter.get("serviceProvider")]
        references += [
            p.get("individual") for p in encounter.get("participant") or [] if isinstance(p, dict)
        ]
        for reference in references:
            text = reference.get("reference") if isinstance(reference, dict) else None
            if text and "identifier=" in text:
                table = "care_site" if text.startswith("Organization") else "provider"
                keys.add((table, text.split("identifier=", 1)[1].split("|")[-1]))
    return keys


def care_site_key(organization: Resource) -> str:
    """An Organization's key: its first identifier's value (what conditional references name)."""
    return _identifier(organization, None) or str(organization.get("id"))


def provider_key(practitioner: Resource) -> str:
    """A Practitioner's key: its NPI (Synthea's conditional references name it), else its id."""
    return _identifier(practitioner, NPI) or str(practitioner.get("id"))


def _identifier(resource: Resource, system: str | None) -> str | None:
    for identifier in resource.get("identifier") or []:
        usable = isinstance(identifier, dict) and identifier.get("value")
        if usable and (system is None or identifier.get("system") == system):
            return str(identifier["value"])
    return None


def _human_name(resource: Resource) -> str | None:
    for name in resource.get("name") or []:
        if isinstance(name, dict):
            parts = [*(name.get("given") or []), name.get("family") or ""]
            return " ".join(part for part in parts if part) or name.get("text")
    return None


def _omb_category(patient: Resource, extension: str) -> tuple[str | None, str | None]:
    """The OMB category code and its text from a US Core race/ethnicity extension."""
    for outer in patient.get("extension") or []:
        if not isinstance(outer, dict) or outer.get("url") != US_CORE + extension:
            continue
        code = text = None
        for inner in outer.get("extension") or []:
            coding: Any = inner.get("valueCoding") if isinstance(inner, dict) else None
            if inner.get("url") == "ombCategory" and isinstance(coding, dict) and code is None:
                code, text = coding.get("code"), coding.get("display") or coding.get("code")
            elif inner.get("url") == "text" and text is None:
                text = inner.get("valueString")
        return code, text
    return None, None
