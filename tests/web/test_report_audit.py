from __future__ import annotations

import json
from pathlib import Path

import httpx

from medfed.errors import TransportError
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.web.app import create_app
from medfed.web.audit import audit_view, fetch_audit_view
from medfed.web.report import build_report, write_report
from medfed.web.server import Binding, DashboardServer
from tests.web.fake import FakeAdmin
from tests.web.sample import sample_status

STUDY = "s-0123456789ab"
CLEVELAND = {"loss_auc": 0.734, "loss_tpr_at_low_fpr": 0.125, "lira_auc": 0.651,
             "lira_tpr_at_low_fpr": 0.0417, "calibrated_auc": 0.612,
             "calibrated_tpr_at_low_fpr": 0.02, "members": 96.0, "non_members": 96.0,
             "reference_models": 4.0, "low_fpr": 0.01, "auc_threshold": 0.7,
             "block_release": 1.0}  # fmt: skip
HUNGARY = {"loss_auc": 0.512, "loss_tpr_at_low_fpr": 0.0, "members": 57.0,
           "non_members": 57.0, "low_fpr": 0.01, "auc_threshold": 0.0,
           "block_release": 0.0}  # fmt: skip


def _audit(audit_id: str, sites: dict[str, dict[str, float]]) -> pb.StudyStatus:
    status = pb.StudyStatus(study_id=audit_id, state="completed", completed_rounds=1,
                            message=f"privacy audit of {len(sites)} site(s)")  # fmt: skip
    status.spec.audit_of = STUDY
    summary = status.rounds.add(round=1, committed_unix_ms=1_700_000_100_000)
    for node, metrics in sites.items():
        rows = int(metrics["members"] + metrics["non_members"])
        summary.per_node.add(node=node, num_examples=rows, metrics=metrics)
    status.refusals.add(round=1, node="switzerland", code="not_a_participant",
                        reason="did not train in study <b>s-0123456789ab</b>")  # fmt: skip
    return status


def _governance(outcome: str, council: bool = True) -> str:
    proposals = [{"id": 4, "kind": "block_release", "proposer": "cleveland",
                  "study_id": STUDY, "outcome": outcome, "votes": {}}]  # fmt: skip
    return json.dumps({"council": {"members": ["ethics"], "threshold": 1} if council else None,
                       "proposals": proposals if council else []})  # fmt: skip


def _page(tmp_path: Path, audit: dict[str, object] | None) -> tuple[str, dict[str, object]]:
    document = build_report(sample_status(), generated_unix=1.7e9, privacy_audit=audit,
                            hospital_names={"va_long_beach": "VA"})  # fmt: skip
    html_path, json_path = write_report(tmp_path / "report", document)
    return html_path.read_text(), json.loads(json_path.read_text())["privacy_audit"]


def test_a_study_never_audited_says_so(tmp_path: Path) -> None:
    page, doc = _page(tmp_path, None)

    assert 'id="privacy-audit"' in page
    assert "No privacy audit was run on this study" in page
    assert doc["run"] is False and doc["audits"] == []


def test_the_section_shows_each_sites_numbers_and_the_block_the_council_has_not_decided(
    tmp_path: Path,
) -> None:
    audits = [_audit("a-1", {"cleveland": CLEVELAND, "hungary": HUNGARY})]

    page, doc = _page(tmp_path, audit_view(STUDY, audits, _governance("open")))

    for shown in ("0.734", "0.125", "0.651", "0.612", "96", "57", "TPR at 1 % FPR", "none set"):
        assert shown in page, shown
    assert "Release blocked" in page and "blocked: requested, not decided" in page
    assert "&lt;b&gt;s-0123456789ab&lt;/b&gt;" in page  # a node's words stay text
    [block] = doc["release"]["blocks"]  # type: ignore[index]
    assert (block["site"], block["auc"], block["attack"], block["threshold"], block["proposal"]) \
        == ("cleveland", 0.734, "loss", 0.7, 4)  # fmt: skip
    [audit] = doc["audits"]  # type: ignore[index]
    rows = {r["site"]: r for r in audit["sites"]}
    assert rows["cleveland"]["block_release"] is True and rows["hungary"]["block_release"] is False
    assert rows["hungary"]["lira_auc"] is None  # no reference models there: "-" in the page
    assert (rows["hungary"]["members"], rows["hungary"]["non_members"]) == (57, 57)


def test_a_block_the_council_overruled_or_the_site_withdrew_does_not_hold(tmp_path: Path) -> None:
    first = _audit("a-1", {"cleveland": CLEVELAND})
    later = _audit("a-2", {"cleveland": CLEVELAND | {"auc_threshold": 0.0, "block_release": 0.0}})

    overruled = audit_view(STUDY, [first], _governance("rejected"))
    withdrawn = audit_view(STUDY, [first, later], _governance("", council=False))
    kept = audit_view(STUDY, [first, later], _governance("passed"))
    page, _ = _page(tmp_path, overruled)

    assert overruled["release"]["blocked"] is False
    assert "Release not blocked" in page and "the council overruled the block" in page
    assert withdrawn["council"] is False and withdrawn["release"]["blocked"] is False
    assert withdrawn["release"]["blocks"][0]["status"] == "withdrawn"
    assert kept["release"]["blocked"] is True


def test_fetch_finds_only_this_studys_audits_and_survives_a_coordinator_without_ledger() -> None:
    mine = _audit("a-1", {"cleveland": CLEVELAND})
    other = _audit("a-9", {"hungary": HUNGARY})
    other.spec.audit_of = "s-other"
    listing = [sample_status(), mine, other]
    by_id = {s.study_id: s for s in listing}

    def no_ledger() -> str:
        raise TransportError("governance: FAILED_PRECONDITION: this coordinator keeps no ledger")

    doc = fetch_audit_view(STUDY, lambda: listing, by_id.__getitem__, no_ledger)

    assert [a["audit_id"] for a in doc["audits"]] == ["a-1"]
    assert doc["council"] is None and doc["release"]["blocked"] is True


class AuditedAdmin(FakeAdmin):
    """The sample study and one audit of it, as the admin API lists and returns them."""

    def __init__(self) -> None:
        super().__init__()
        self.audit = _audit("a-1", {"cleveland": CLEVELAND, "hungary": HUNGARY})

    def status(self, study_id: str, timeout_s: float = 30.0) -> pb.StudyStatus:
        return self.audit if study_id == "a-1" else super().status(study_id, timeout_s)

    def studies(self, page_size: int = 0) -> list[pb.StudyStatus]:
        return [self.current, self.audit]


def test_the_dashboards_study_page_has_the_same_section() -> None:
    cases = ((AuditedAdmin(), lambda: _governance("open")), (FakeAdmin(), None))
    for admin, governance in cases:
        app = create_app(admin, governance=governance)
        server = DashboardServer(app, Binding("127.0.0.1", 0, ""))
        server.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
                page = client.get(f"/studies/{STUDY}").text
                doc = client.get(f"/api/studies/{STUDY}").json()["privacy_audit"]
        finally:
            server.stop()
        if governance is None:
            assert "No privacy audit was run on this study" in page and doc["run"] is False
            continue
        assert 'id="privacy-audit"' in page and "Release blocked" in page
        assert "0.734" in page and "proposal" in page
        assert doc["release"]["blocks"][0]["proposal"] == 4
