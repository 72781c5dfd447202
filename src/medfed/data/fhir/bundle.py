"""One FHIR R4 bundle file, read with plain ``json`` and indexed for reference lookups.

``json.loads`` parses Synthea's bundles at ~24 MB/s here; the ``fhir.resources`` models take
~50x longer, so they run only when the steward asks (``--validate``), and then the R4B models:
the package's default R5 models reject 17 of the 18 Synthea R4 bundles.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfed.errors import EtlError

Resource = dict[str, Any]

PATIENT_FIELDS = {"Immunization": "patient"}
"""Where a resource names its patient when it is not ``subject``."""


@dataclass
class Bundle:
    """A parsed bundle: its resources, by type and by every name a reference may use."""

    path: Path
    size: int
    resources: list[Resource]
    _index: dict[str, Resource] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> Iterator[Resource]:
        return (r for r in self.resources if r.get("resourceType") == resource_type)

    def counts(self) -> Counter[str]:
        return Counter(str(r.get("resourceType")) for r in self.resources)

    def resolve(self, reference: str | None) -> Resource | None:
        """The resource a literal reference names inside this bundle (``urn:uuid:...`` or
        ``Type/id``), None for anything else (conditional references included)."""
        if not reference:
            return None
        return self._index.get(reference)

    def patient_of(self, resource: Resource) -> Resource:
        """The bundle's Patient this resource is about; refuses the bundle if there is none."""
        reference = (
            resource.get(PATIENT_FIELDS.get(resource["resourceType"], "subject")) or {}
        ).get("reference")
        patient = self.resolve(reference)
        if patient is None or patient.get("resourceType") != "Patient":
            raise EtlError(
                f"{describe(resource)}: unknown patient reference {reference!r} "
                f"(the Patient must be in the same bundle)"
            )
        return patient


def read_bundle(path: Path, *, validate: bool = False) -> Bundle:
    """Parse ``path``; raise :class:`EtlError` naming the file when it is no usable bundle."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EtlError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EtlError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        kind = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise EtlError(f"{path}: not a FHIR Bundle (resourceType {kind!r})")
    if validate:
        _validate_r4b(path, data)
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        raise EtlError(f"{path}: Bundle.entry is not a list")
    bundle = Bundle(path, len(raw), [])
    for number, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise EtlError(f"{path}: entry {number} holds no resource")
        bundle.resources.append(resource)
        if entry.get("fullUrl"):
            bundle._index[entry["fullUrl"]] = resource
        if resource.get("id"):
            bundle._index[f"{resource['resourceType']}/{resource['id']}"] = resource
    return bundle


def describe(resource: Resource) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def _validate_r4b(path: Path, data: dict[str, Any]) -> None:
    """Validate against the FHIR R4B models; the error names the first few failing fields."""
    from fhir.resources.R4B.bundle import Bundle as R4BBundle  # ~0.25 s to import
    from pydantic import ValidationError

    try:
        R4BBundle.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        shown = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in errors[:3]
        )
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise EtlError(
            f"{path}: invalid FHIR R4 bundle, {len(errors)} error(s): {shown}{more}"
        ) from None
