"""Hand-made CDM rows for the cohort and feature tests: each test states its patients briefly."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field

from medfed.data.omop.cohort import FEMALE, MALE
from medfed.data.omop.store import OmopStore

SBP = 3004249
CHOL = 3027114
STRESS_TEST = 4296597
CORONARY = 317576
LOCAL_A = 2_000_000_001
LOCAL_B = 2_000_000_002
YES = 2_000_000_101
NO = 2_000_000_102
INDEX = dt.date(2020, 6, 15)

_ids = itertools.count(1)


@dataclass
class Patient:
    source: str
    born: dt.date | None
    male: bool = True
    entries: list[dt.date] = field(default_factory=lambda: [INDEX])
    measurements: list[tuple[int, dt.date, float | None, int | None]] = field(default_factory=list)
    conditions: list[tuple[int, dt.date]] = field(default_factory=list)
    observed_from: dt.date | None = None


def insert(store: OmopStore, patients: list[Patient]) -> dict[str, int]:
    """Insert the patients (entry event = a stress-test procedure); returns person ids by source."""
    ids = {}
    with store.begin() as conn:
        for patient in patients:
            pid = next(_ids)
            ids[patient.source] = pid
            born = patient.born
            conn.execute(
                store.table("person").insert(),
                {
                    "person_id": pid,
                    "gender_concept_id": MALE if patient.male else FEMALE,
                    "year_of_birth": born.year if born else 1900,
                    "month_of_birth": born.month if born else None,
                    "day_of_birth": born.day if born else None,
                    "race_concept_id": 0,
                    "ethnicity_concept_id": 0,
                    "person_source_value": patient.source,
                },
            )
            for day in patient.entries:
                conn.execute(
                    store.table("procedure_occurrence").insert(),
                    {
                        "procedure_occurrence_id": next(_ids),
                        "person_id": pid,
                        "procedure_concept_id": STRESS_TEST,
                        "procedure_date": day,
                        "procedure_type_concept_id": 0,
                    },
                )
            for concept, day, number, coded in patient.measurements:
                conn.execute(
                    store.table("measurement").insert(),
                    {
                        "measurement_id": next(_ids),
                        "person_id": pid,
                        "measurement_concept_id": concept,
                        "measurement_date": day,
                        "measurement_type_concept_id": 0,
                        "value_as_number": number,
                        "value_as_concept_id": coded,
                    },
                )
            for concept, day in patient.conditions:
                conn.execute(
                    store.table("condition_occurrence").insert(),
                    {
                        "condition_occurrence_id": next(_ids),
                        "person_id": pid,
                        "condition_concept_id": concept,
                        "condition_start_date": day,
                        "condition_type_concept_id": 0,
                    },
                )
            if patient.observed_from is not None:
                conn.execute(
                    store.table("observation_period").insert(),
                    {
                        "observation_period_id": next(_ids),
                        "person_id": pid,
                        "observation_period_start_date": patient.observed_from,
                        "observation_period_end_date": max(patient.entries),
                        "period_type_concept_id": 0,
                    },
                )
    return ids


def days(n: int) -> dt.date:
    return INDEX + dt.timedelta(days=n)
