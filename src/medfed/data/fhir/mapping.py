"""FHIR R4 resources -> OMOP CDM 5.4 rows, one bundle at a time.

What goes where (OHDSI's ETL-Synthea made the same choices, from Synthea's CSV side):

=====================  ======================================================================
Patient                person (+ death from ``deceasedDateTime``)
Encounter              visit_occurrence (class IMP/EMER/AMB... -> inpatient/ER/outpatient)
Condition              condition_occurrence
Observation            measurement or observation, by the standard concept's domain; each
                       ``component`` is a row of its own (systolic 8480-6 exists only as a
                       component of the blood-pressure panel), the panel itself none
MedicationRequest      drug_exposure (RxNorm)
Immunization           drug_exposure (CVX)
Procedure              procedure_occurrence
Organization           care_site;  Practitioner: provider
(per patient)          observation_period from the first to the last encounter
=====================  ======================================================================

Other resource types (Claim, ExplanationOfBenefit, CarePlan, DiagnosticReport, ...) are counted
and skipped. Every event carries type concept 32817 ("EHR").
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from medfed.data.fhir.bundle import Bundle, Resource
from medfed.data.fhir.fields import (
    UCUM,
    Code,
    clip,
    codings,
    first_instant,
    first_participant,
    has_value,
    observed_value,
    required_code,
    required_instant,
)
from medfed.data.fhir.keys import ID_COLUMNS, KeyRow, RowIds
from medfed.data.fhir.people import care_site_key, patient_rows, provider_key, shared_rows
from medfed.data.omop.vocabulary import ConceptMapper, ConceptMatch

EHR = 32817
"""Type concept "EHR": where every row the ETL writes came from."""

VISIT_CONCEPTS = {"IMP": 9201, "ACUTE": 9201, "NONAC": 9201, "EMER": 9203}
OUTPATIENT_VISIT = 9202
"""Encounter.class (v3 ActCode) -> Visit concept; every other class is an outpatient visit."""

MEASUREMENT_CATEGORIES = {"vital-signs", "laboratory"}
"""Where an Observation whose code maps nowhere goes: these categories to measurement."""

MAPPED_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Immunization",
    "Procedure",
    "Organization",
    "Practitioner",
)


@dataclass
class BundleRows:
    """The rows of one bundle by table, and a key row for each row that has an id."""

    ids: RowIds
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    keys: list[KeyRow] = field(default_factory=list)

    def add(
        self,
        table: str,
        source_key: str,
        row: dict[str, Any],
        person_key: str | None,
        vocabulary: str | None = None,
    ) -> int:
        row_id = self.ids.assign(table, source_key)
        row[ID_COLUMNS[table]] = row_id
        self.tables[table].append(row)
        self.keys.append(KeyRow(table, source_key, row_id, person_key, vocabulary))
        return row_id


class BundleMapper:
    """Turns one parsed bundle into CDM rows; raises EtlError for a resource it cannot use."""

    def __init__(self, bundle: Bundle, concepts: ConceptMapper, rows: BundleRows) -> None:
        self.bundle = bundle
        self.concepts = concepts
        self.rows = rows
        self.persons: dict[str, int] = {}
        self.visits: dict[str, tuple[int, dt.datetime, dt.datetime]] = {}

    def run(self) -> None:
        shared_rows(self.bundle, self.rows)
        for patient in self.bundle.of_type("Patient"):
            self.persons[patient["id"]] = patient_rows(patient, self.rows)
        for encounter in self.bundle.of_type("Encounter"):
            self._visit(encounter)
        events = {
            "Condition": self._condition,
            "Observation": self._observation,
            "MedicationRequest": self._medication_request,
            "Immunization": self._immunization,
            "Procedure": self._procedure,
        }
        for resource in self.bundle.resources:
            handler = events.get(resource["resourceType"])
            if handler is not None and resource.get("status") not in {
                "entered-in-error",
                "not-done",
            }:
                handler(resource)
        self._observation_periods()

    def source_codes(self) -> set[tuple[str, str]]:
        """Every (vocabulary, code) this bundle will look up: prefetched in a few queries."""
        pairs: set[tuple[str, str]] = set()

        def note(concept: Any) -> None:
            for code in codings(concept):
                vocabulary = self.concepts.vocabulary_id(code.system)
                if vocabulary and code.code:
                    pairs.add((vocabulary, code.code))

        for resource in self.bundle.resources:
            for name in (
                "code",
                "vaccineCode",
                "medicationCodeableConcept",
                "valueCodeableConcept",
            ):
                note(resource.get(name))
            for holder in (resource, *(resource.get("component") or [])):
                note(holder.get("code"))
                note(holder.get("valueCodeableConcept"))
                quantity = holder.get("valueQuantity")
                if (
                    isinstance(quantity, dict)
                    and quantity.get("system") == UCUM
                    and quantity.get("code")
                ):
                    pairs.add(("UCUM", quantity["code"]))
        return pairs

    # -- resources -------------------------------------------------------------------------

    def _visit(self, encounter: Resource) -> None:
        person_key, person_id = self._person(encounter)
        start = required_instant(encounter, "period.start")
        end = first_instant(encounter, "period.end") or start
        visit_class = (encounter.get("class") or {}).get("code")
        row = {
            "person_id": person_id,
            "visit_concept_id": VISIT_CONCEPTS.get(visit_class, OUTPATIENT_VISIT)
            if visit_class
            else 0,
            "visit_start_date": start.date(),
            "visit_start_datetime": start,
            "visit_end_date": end.date(),
            "visit_end_datetime": end,
            "visit_type_concept_id": EHR,
            "care_site_id": self._shared_id("care_site", encounter.get("serviceProvider")),
            "provider_id": self._shared_id("provider", first_participant(encounter)),
            "visit_source_value": clip(visit_class, 50),
            "visit_source_concept_id": 0,
        }
        visit_id = self.rows.add("visit_occurrence", encounter["id"], row, person_key, "v3-ActCode")
        self.visits[encounter["id"]] = (visit_id, start, end)

    def _condition(self, condition: Resource) -> None:
        person_key, person_id = self._person(condition)
        code = required_code(condition, "code", self.concepts.vocabulary_id)
        start = required_instant(condition, "onsetDateTime", "onsetPeriod.start", "recordedDate")
        end = first_instant(condition, "abatementDateTime", "abatementPeriod.end")
        match = self._match(code)
        row = {
            "person_id": person_id,
            "condition_concept_id": match.concept_id,
            "condition_start_date": start.date(),
            "condition_start_datetime": start,
            "condition_end_date": end.date() if end else None,
            "condition_end_datetime": end,
            "condition_type_concept_id": EHR,
            "visit_occurrence_id": self._visit_id(condition),
            "condition_source_value": clip(code.source_value, 50),
            "condition_source_concept_id": match.source_concept_id,
        }
        self.rows.add("condition_occurrence", condition["id"], row, person_key, self._vocab(code))

    def _observation(self, observation: Resource) -> None:
        person_key, person_id = self._person(observation)
        when = required_instant(observation, "effectiveDateTime", "effectivePeriod.start", "issued")
        categories = {
            code.code
            for category in observation.get("category") or []
            for code in codings(category)
        }
        parts = [(observation["id"], observation)]
        components = observation.get("component") or []
        if components and not has_value(observation):  # a panel: its components are the data
            parts = [
                (f"{observation['id']}/component/{i}", part) for i, part in enumerate(components)
            ]
        for source_key, holder in parts:
            code = required_code(holder, "code", self.concepts.vocabulary_id)
            match = self._match(code)
            as_measurement = match.domain_id == "Measurement" or (
                not match.mapped and bool(categories & MEASUREMENT_CATEGORIES)
            )
            common = {
                "person_id": person_id,
                "visit_occurrence_id": self._visit_id(observation),
                **observed_value(holder, self.concepts),
            }
            if as_measurement:
                self._measurement(source_key, person_key, code, match, when, common)
            else:
                self._observation_row(source_key, person_key, code, match, when, common)

    def _measurement(
        self,
        source_key: str,
        person_key: str,
        code: Code,
        match: ConceptMatch,
        when: dt.datetime,
        value: dict[str, Any],
    ) -> None:
        row = {
            "person_id": value["person_id"],
            "measurement_concept_id": match.concept_id,
            "measurement_date": when.date(),
            "measurement_datetime": when,
            "measurement_type_concept_id": EHR,
            "value_as_number": value["number"],
            "value_as_concept_id": value["value_concept_id"],
            "unit_concept_id": value["unit_concept_id"],
            "visit_occurrence_id": value["visit_occurrence_id"],
            "measurement_source_value": clip(code.source_value, 50),
            "measurement_source_concept_id": match.source_concept_id,
            "unit_source_value": clip(value["unit_source"], 50),
            "value_source_value": clip(value["value_source"], 50),
        }
        self.rows.add("measurement", source_key, row, person_key, self._vocab(code))

    def _observation_row(
        self,
        source_key: str,
        person_key: str,
        code: Code,
        match: ConceptMatch,
        when: dt.datetime,
        value: dict[str, Any],
    ) -> None:
        row = {
            "person_id": value["person_id"],
            "observation_concept_id": match.concept_id,
            "observation_date": when.date(),
            "observation_datetime": when,
            "observation_type_concept_id": EHR,
            "value_as_number": value["number"],
            "value_as_string": clip(value["text"], 60),
            "value_as_concept_id": value["value_concept_id"],
            "unit_concept_id": value["unit_concept_id"],
            "visit_occurrence_id": value["visit_occurrence_id"],
            "observation_source_value": clip(code.source_value, 50),
            "observation_source_concept_id": match.source_concept_id,
            "unit_source_value": clip(value["unit_source"], 50),
            "value_source_value": clip(value["value_source"], 50),
        }
        self.rows.add("observation", source_key, row, person_key, self._vocab(code))

    def _medication_request(self, request: Resource) -> None:
        medication = self.bundle.resolve(
            (request.get("medicationReference") or {}).get("reference")
        )
        holder = (
            medication if medication and "medicationCodeableConcept" not in request else request
        )
        field_name = "code" if holder is medication else "medicationCodeableConcept"
        code = required_code(holder, field_name, self.concepts.vocabulary_id)
        start = required_instant(request, "authoredOn")
        end = first_instant(request, "dispenseRequest.validityPeriod.end") or start
        dosage = (request.get("dosageInstruction") or [{}])[0]
        quantity = ((request.get("dispenseRequest") or {}).get("quantity") or {}).get("value")
        self._drug(request, code, start, end, quantity=quantity, sig=dosage.get("text"))

    def _immunization(self, immunization: Resource) -> None:
        code = required_code(immunization, "vaccineCode", self.concepts.vocabulary_id)
        when = required_instant(immunization, "occurrenceDateTime", "recorded")
        self._drug(immunization, code, when, when, quantity=None, sig=None)

    def _drug(
        self,
        resource: Resource,
        code: Code,
        start: dt.datetime,
        end: dt.datetime,
        *,
        quantity: Any,
        sig: str | None,
    ) -> None:
        person_key, person_id = self._person(resource)
        match = self._match(code)
        row = {
            "person_id": person_id,
            "drug_concept_id": match.concept_id,
            "drug_exposure_start_date": start.date(),
            "drug_exposure_start_datetime": start,
            "drug_exposure_end_date": end.date(),
            "drug_exposure_end_datetime": end,
            "drug_type_concept_id": EHR,
            "quantity": quantity if isinstance(quantity, int | float) else None,
            "sig": sig,
            "visit_occurrence_id": self._visit_id(resource),
            "drug_source_value": clip(code.source_value, 50),
            "drug_source_concept_id": match.source_concept_id,
        }
        key = f"{resource['resourceType']}/{resource['id']}"
        self.rows.add("drug_exposure", key, row, person_key, self._vocab(code))

    def _procedure(self, procedure: Resource) -> None:
        person_key, person_id = self._person(procedure)
        code = required_code(procedure, "code", self.concepts.vocabulary_id)
        start = required_instant(procedure, "performedDateTime", "performedPeriod.start")
        end = first_instant(procedure, "performedPeriod.end")
        match = self._match(code)
        row = {
            "person_id": person_id,
            "procedure_concept_id": match.concept_id,
            "procedure_date": start.date(),
            "procedure_datetime": start,
            "procedure_end_date": end.date() if end else None,
            "procedure_end_datetime": end,
            "procedure_type_concept_id": EHR,
            "visit_occurrence_id": self._visit_id(procedure),
            "procedure_source_value": clip(code.source_value, 50),
            "procedure_source_concept_id": match.source_concept_id,
        }
        self.rows.add("procedure_occurrence", procedure["id"], row, person_key, self._vocab(code))

    def _observation_periods(self) -> None:
        spans: dict[str, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
        for encounter in self.bundle.of_type("Encounter"):
            _, start, end = self.visits[encounter["id"]]
            spans[self.bundle.patient_of(encounter)["id"]].append((start, end))
        for patient_id, periods in spans.items():
            row = {
                "person_id": self.persons[patient_id],
                "observation_period_start_date": min(start for start, _ in periods).date(),
                "observation_period_end_date": max(end for _, end in periods).date(),
                "period_type_concept_id": EHR,
            }
            self.rows.add("observation_period", patient_id, row, patient_id)

    # -- helpers ---------------------------------------------------------------------------

    def _person(self, resource: Resource) -> tuple[str, int]:
        patient_id = self.bundle.patient_of(resource)["id"]
        return patient_id, self.persons[patient_id]

    def _visit_id(self, resource: Resource) -> int | None:
        encounter = self.bundle.resolve((resource.get("encounter") or {}).get("reference"))
        visit = self.visits.get(encounter["id"]) if encounter else None
        return visit[0] if visit else None

    def _shared_id(self, table: str, reference: Any) -> int | None:
        """A care site or provider by literal reference or by ``Type?identifier=sys|value``."""
        text = reference.get("reference") if isinstance(reference, dict) else None
        if not text:
            return None
        target = self.bundle.resolve(text)
        if target is not None:
            key = care_site_key(target) if table == "care_site" else provider_key(target)
        elif "identifier=" in text:
            key = text.split("identifier=", 1)[1].split("|")[-1]
        else:
            return None
        return self.rows.ids.lookup(table, key)

    def _match(self, code: Code) -> ConceptMatch:
        return self.concepts.match(self.concepts.vocabulary_id(code.system), code.code)

    def _vocab(self, code: Code) -> str | None:
        return self.concepts.vocabulary_id(code.system) or code.system
