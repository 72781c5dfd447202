"""Reading FHIR datatypes out of plain JSON dicts: dateTimes, codings, quantities."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from medfed.data.fhir.bundle import Resource, describe
from medfed.data.omop.vocabulary import ConceptMapper
from medfed.errors import EtlError

UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Code:
    """One coding: its system, code and display, as the source wrote them."""

    system: str | None
    code: str | None
    display: str | None

    @property
    def source_value(self) -> str | None:
        """What OMOP's ``*_source_value`` keeps: the code, or the text when there is none."""
        return self.code or self.display


def instant(value: Any) -> dt.datetime | None:
    """A FHIR date or dateTime as a naive UTC datetime (partial dates fall on the 1st).

    The CDM's datetime columns carry no zone; converting to UTC keeps events from sites in
    different zones comparable.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def first_instant(resource: Resource, *paths: str) -> dt.datetime | None:
    """The first of ``paths`` (``field`` or ``field.sub``) that holds a date."""
    for path in paths:
        value: Any = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if (when := instant(value)) is not None:
            return when
    return None


def required_instant(resource: Resource, *paths: str) -> dt.datetime:
    when = first_instant(resource, *paths)
    if when is None:
        raise EtlError(f"{describe(resource)}: no date (looked in {', '.join(paths)})")
    return when


def codings(concept: Any) -> Iterator[Code]:
    """Every coding of a CodeableConcept, then its text alone if it has no coding."""
    if not isinstance(concept, dict):
        return
    found = False
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and (coding.get("code") or coding.get("display")):
            found = True
            yield Code(coding.get("system"), coding.get("code"), coding.get("display"))
    if not found and concept.get("text"):
        yield Code(None, None, concept["text"])


def pick_code(concept: Any, known: Callable[[str | None], str | None]) -> Code | None:
    """The first coding in a system the vocabulary knows, else the first coding at all."""
    choices = list(codings(concept))
    for choice in choices:
        if known(choice.system):
            return choice
    return choices[0] if choices else None


def required_code(resource: Resource, name: str, known: Callable[[str | None], str | None]) -> Code:
    code = pick_code(resource.get(name), known)
    if code is None:
        raise EtlError(f"{describe(resource)}: no {name}")
    return code


def unit_code(quantity: dict[str, Any]) -> Code:
    """A Quantity's unit: its UCUM code when it has one, else the unit as written."""
    system = quantity.get("system")
    return Code(system, quantity.get("code") or quantity.get("unit"), quantity.get("unit"))


def clip(text: str | None, length: int) -> str | None:
    return text[:length] if text else text


def observed_value(holder: Resource, concepts: ConceptMapper) -> dict[str, Any]:
    """An Observation's (or component's) value: number, text, coded value and unit."""
    value: dict[str, Any] = dict.fromkeys(
        ("number", "text", "value_concept_id", "unit_concept_id", "unit_source", "value_source")
    )
    if isinstance(quantity := holder.get("valueQuantity"), dict):
        number = quantity.get("value")
        value["number"] = number if isinstance(number, int | float) else None
        unit = unit_code(quantity)
        value["unit_source"] = unit.code
        value["unit_concept_id"] = concepts.match(
            "UCUM" if unit.system == UCUM else None, unit.code
        ).concept_id
        value["value_source"] = None if number is None else str(number)
    elif (
        code := pick_code(holder.get("valueCodeableConcept"), concepts.vocabulary_id)
    ) is not None:
        vocabulary = concepts.vocabulary_id(code.system)
        value["value_concept_id"] = concepts.match(vocabulary, code.code).concept_id
        value["text"] = code.display or code.code
        value["value_source"] = code.code or code.display
    elif isinstance(holder.get("valueString"), str):
        value["text"] = value["value_source"] = holder["valueString"]
    elif isinstance(holder.get("valueBoolean"), bool):
        value["number"] = int(holder["valueBoolean"])
        value["value_source"] = str(holder["valueBoolean"]).lower()
    elif isinstance(holder.get("valueInteger"), int):
        value["number"] = holder["valueInteger"]
        value["value_source"] = str(holder["valueInteger"])
    return value


def has_value(resource: Resource) -> bool:
    return any(name.startswith("value") for name in resource)


def first_participant(encounter: Resource) -> Any:
    """The first participant's ``individual`` reference of an Encounter, if any."""
    for participant in encounter.get("participant") or []:
        if isinstance(participant, dict) and participant.get("individual"):
            return participant["individual"]
    return None
