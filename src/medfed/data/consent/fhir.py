"""FHIR R4 Consent resources -> consent decisions for one study.

Read as plain JSON (a single Consent, or a Bundle holding them). A resource records a decision only
when it is final and explicit:

=================  ==================  =========
``status``         ``provision.type``  decision
=================  ==================  =========
active             permit              granted
active             deny                revoked
rejected           (any)               revoked
inactive           (any)               revoked
=================  ==================  =========

Anything else (draft, proposed, entered-in-error, an active Consent without ``provision.type``, a
patient that is not ``Patient/<id>`` or ``urn:uuid:<id>``) is refused by name with the reason:
guessing a patient's consent is worse than asking the steward to fix the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from medfed.data.consent.model import Decision


@dataclass(frozen=True)
class FhirDecision:
    name: str
    """``file#Consent/<id>``: where the decision came from (kept as the log's source)."""
    patient: str
    decision: Decision
    at: datetime | None


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str


def read_consents(paths: list[Path]) -> tuple[list[FhirDecision], list[Refusal]]:
    """Every Consent in ``paths`` (files, or folders of ``*.json``), in file order."""
    decisions: list[FhirDecision] = []
    refused: list[Refusal] = []
    for path in _files(paths):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            refused.append(Refusal(str(path), f"not a JSON file: {exc}"))
            continue
        for name, resource in _resources(path, document, refused):
            try:
                decisions.append(_decision(name, resource))
            except ValueError as exc:
                refused.append(Refusal(name, str(exc)))
    return decisions, refused


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        yield from sorted(path.glob("*.json")) if path.is_dir() else [path]


def _resources(
    path: Path, document: Any, refused: list[Refusal]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    kind = document.get("resourceType") if isinstance(document, dict) else None
    if kind == "Consent":
        yield f"{path.name}#Consent/{document.get('id', '?')}", document
    elif kind == "Bundle":
        for index, entry in enumerate(document.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "Consent":
                yield f"{path.name}#Consent/{resource.get('id', f'entry[{index}]')}", resource
    else:
        refused.append(Refusal(str(path), f"not a Consent or Bundle (resourceType {kind!r})"))


def _decision(name: str, resource: Mapping[str, Any]) -> FhirDecision:
    status = resource.get("status")
    provision = resource.get("provision")
    kind = provision.get("type") if isinstance(provision, dict) else None
    if status == "active" and kind in ("permit", "deny"):
        decision = Decision.GRANTED if kind == "permit" else Decision.REVOKED
    elif status == "active":
        raise ValueError(f"active Consent without provision.type permit|deny (got {kind!r})")
    elif status in ("rejected", "inactive"):
        decision = Decision.REVOKED
    else:
        raise ValueError(f"status {status!r} records no decision (active|rejected|inactive)")
    return FhirDecision(name, _patient(resource), decision, _when(resource.get("dateTime")))


def _patient(resource: Mapping[str, Any]) -> str:
    patient = resource.get("patient")
    reference = patient.get("reference") if isinstance(patient, dict) else None
    if isinstance(reference, str):
        for prefix in ("Patient/", "urn:uuid:"):
            if reference.startswith(prefix) and len(reference) > len(prefix):
                return reference[len(prefix) :]
    raise ValueError(f"patient reference {reference!r} is not Patient/<id> or urn:uuid:<id>")


def _when(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"dateTime {value!r} is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        raise ValueError(f"dateTime {value!r} has no time zone")
    return when
