"""FHIR R4 Consent import: Bundles or single resources; bad ones refused by name with the reason."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from medfed.data.consent import Consents, Decision
from medfed.data.consent.fhir import read_consents
from medfed.data.omop.store import OmopStore
from tests.data.consent.conftest import AT


def _consent(cid: str, patient: str, status: str = "active", kind: str | None = "permit",
             when: str | None = "2026-11-02T10:00:00+01:00") -> dict[str, Any]:  # fmt: skip
    resource: dict[str, Any] = {"resourceType": "Consent", "id": cid, "status": status,
                                "patient": {"reference": patient}}  # fmt: skip
    if kind is not None:
        resource["provision"] = {"type": kind}
    if when is not None:
        resource["dateTime"] = when
    return resource


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _files(tmp_path: Path) -> list[Path]:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": _consent("c1", "Patient/p1")},
            {"resource": _consent("c2", "urn:uuid:p2")},
            {"resource": _consent("c3", "Patient/p3", kind="deny")},
            {"resource": _consent("c4", "Patient/p4", status="rejected", kind=None)},
            {"resource": _consent("c5", "Patient/p5", status="draft")},
            {"resource": _consent("c6", "Patient/p6", kind=None)},
            {"resource": _consent("c7", "Organization/o1")},
            {"resource": _consent("c8", "Patient/ghost")},
            {"resource": _consent("c9", "Patient/p6", when="2026-11-02")},
            {"resource": {"resourceType": "Patient", "id": "p1"}},
        ],
    }
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    return [
        _write(tmp_path / "consents.json", bundle),
        _write(tmp_path / "single.json", _consent("c10", "Patient/p6", when=None)),
        _write(tmp_path / "later.json", _consent("c11", "Patient/p2", status="inactive")),
        _write(tmp_path / "patient.json", {"resourceType": "Patient", "id": "p9"}),
        tmp_path / "broken.json",
    ]


def test_the_status_and_provision_decide_and_everything_else_is_refused(tmp_path: Path) -> None:
    decisions, refused = read_consents(_files(tmp_path))

    assert [(d.name, d.patient, d.decision) for d in decisions] == [
        ("consents.json#Consent/c1", "p1", Decision.GRANTED),
        ("consents.json#Consent/c2", "p2", Decision.GRANTED),
        ("consents.json#Consent/c3", "p3", Decision.REVOKED),
        ("consents.json#Consent/c4", "p4", Decision.REVOKED),
        ("consents.json#Consent/c8", "ghost", Decision.GRANTED),
        ("single.json#Consent/c10", "p6", Decision.GRANTED),
        ("later.json#Consent/c11", "p2", Decision.REVOKED),
    ]
    reasons = {r.name.rsplit("/", 1)[-1]: r.reason for r in refused}
    assert "status 'draft'" in reasons["c5"]
    assert "without provision.type" in reasons["c6"]
    assert "not Patient/<id>" in reasons["c7"]
    assert "no time zone" in reasons["c9"]
    assert "resourceType 'Patient'" in reasons["patient.json"]
    assert "not a JSON file" in reasons["broken.json"]
    assert len(refused) == 6


def test_an_import_records_the_valid_consents_and_names_the_rest(
    store: OmopStore, tmp_path: Path
) -> None:
    report = Consents(store).import_fhir("s1", _files(tmp_path), "steward", AT)

    assert report.recorded == 6
    assert [r.name for r in report.refused][-1] == "consents.json#Consent/c8"
    assert "'ghost' is not in the CDM" in report.refused[-1].reason
    assert (report.state.consented_n, report.state.watermark) == (2, 6)  # p1 and p6
    tail = Consents(store).show("s1").tail
    assert tail[0].source == "fhir:consents.json#Consent/c1"
    assert tail[0].at == dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    assert tail[4].at == AT  # single.json has no dateTime: the import time stands in
