"""The CA's register of every certificate it issued: ``index.json``, the source of the CRL.

Serials are stored as decimal strings: they are up to 159 bits (RFC 5280 section 4.1.2.2) and
JSON readers outside Python lose precision on integers above 2**53. The register is immutable in
memory; every change yields a new one that the CA writes back atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from medfed.errors import PkiError
from medfed.pki.files import read_file, write_atomic
from medfed.pki.identity import Role

INDEX_VERSION = 1


@dataclass(frozen=True)
class IssuedRecord:
    """One issued certificate; ``revoked_at`` is None while it is not revoked."""

    serial: int
    name: str
    role: Role
    not_after: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class CaIndex:
    """Issued certificates in issue order and the last CRL number signed (RFC 5280 5.2.3)."""

    consortium: str
    records: tuple[IssuedRecord, ...] = ()
    crl_number: int = 0

    def add(self, record: IssuedRecord) -> CaIndex:
        return replace(self, records=(*self.records, record))

    def revoke(self, name: str, at: datetime) -> tuple[CaIndex, int]:
        """Mark every unrevoked certificate of ``name`` revoked; return the new index and count."""
        records = tuple(
            replace(record, revoked_at=at)
            if record.name == name and record.revoked_at is None
            else record
            for record in self.records
        )
        count = sum(new is not old for new, old in zip(records, self.records, strict=True))
        return replace(self, records=records), count

    def next_crl(self) -> CaIndex:
        return replace(self, crl_number=self.crl_number + 1)

    def revoked(self) -> list[IssuedRecord]:
        return [record for record in self.records if record.revoked_at is not None]


def save_index(path: Path, index: CaIndex) -> None:
    document = {
        "version": INDEX_VERSION,
        "consortium": index.consortium,
        "crl_number": index.crl_number,
        "certificates": [_record_to_json(record) for record in index.records],
    }
    write_atomic(path, (json.dumps(document, indent=2) + "\n").encode())


def load_index(path: Path) -> CaIndex:
    try:
        document = json.loads(read_file(path, "CA index"))
        if document.get("version") != INDEX_VERSION:
            raise PkiError(f"{path}: unsupported index version {document.get('version')!r}")
        return CaIndex(
            consortium=str(document["consortium"]),
            records=tuple(_record_from_json(item) for item in document["certificates"]),
            crl_number=int(document["crl_number"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PkiError(f"{path} is not a valid medfed CA index: {exc}") from None


def _record_to_json(record: IssuedRecord) -> dict[str, Any]:
    return {
        "serial": str(record.serial),
        "name": record.name,
        "role": record.role.value,
        "not_after": record.not_after.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def _record_from_json(item: dict[str, Any]) -> IssuedRecord:
    revoked_at = item["revoked_at"]
    return IssuedRecord(
        serial=int(item["serial"]),
        name=str(item["name"]),
        role=Role(item["role"]),
        not_after=datetime.fromisoformat(item["not_after"]),
        revoked_at=datetime.fromisoformat(revoked_at) if revoked_at is not None else None,
    )
