from __future__ import annotations

import json
import re
from pathlib import Path

from medfed.demo.report import Baseline
from medfed.web.report import build_report, write_report
from tests.web.chromium import chromium, network_events, screenshot, severe_console
from tests.web.sample import HOSPITALS, sample_status

BASELINES = [
    Baseline("pooled (centralised)", 0.8, {h: 0.7 for h in HOSPITALS}, 0.85),
    Baseline("Cleveland alone", 0.7, {h: 0.6 for h in HOSPITALS}, None),
]


def _write(tmp_path: Path) -> tuple[Path, Path]:
    document = build_report(
        sample_status(), BASELINES, generated_unix=1.7e9, hospital_names={"va_long_beach": "VA"}
    )
    return write_report(tmp_path / "report", document)


def test_json_holds_what_the_page_shows(tmp_path: Path) -> None:
    html_path, json_path = _write(tmp_path)
    doc = json.loads(json_path.read_text())
    study = doc["study"]
    assert set(study["per_hospital"]["accuracy"]) == set(HOSPITALS)
    assert [p[0] for p in study["global"]["accuracy"]] == [1, 2, 3]
    assert study["refusals"][0]["code"] == "plan_not_approved"
    assert study["provenance"]["plan_sha256"] == "ab" * 32
    assert len(study["provenance"]["spec_sha256"]) == 64
    assert study["privacy"]["latest"] == {h: 1.5 for h in HOSPITALS}
    assert study["secure_aggregation"]["dropouts"] == [[1, 1.0], [2, 1.0], [3, 1.0]]
    assert [b["name"] for b in doc["baselines"]] == [b.name for b in BASELINES]
    page = html_path.read_text()
    assert study["provenance"]["spec_sha256"] in page
    assert "pooled (centralised)" in page and "VA" in page
    for section in ("protocol", "global", "hospitals", "baselines", "participation", "privacy",
                    "secagg", "refusals", "provenance"):  # fmt: skip
        assert f'id="{section}"' in page


def test_html_is_self_contained(tmp_path: Path) -> None:
    page = _write(tmp_path)[0].read_text()
    assert "<script" not in page.replace("&lt;script&gt;", "")  # a node's words stay text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert page.count("<svg") >= 6


def test_report_opens_offline_in_chromium_with_no_failed_requests(tmp_path: Path) -> None:
    html_path = _write(tmp_path)[0].resolve()
    with chromium() as browser:
        browser.set_network_conditions(
            offline=True, latency=0, download_throughput=0, upload_throughput=0
        )
        browser.get(html_path.as_uri())
        title = browser.title
        charts = browser.execute_script("return document.querySelectorAll('svg.chart').length;")
        events = network_events(browser)
        console = severe_console(browser)
        screenshot(browser, "study-report.png")
    requested = [
        e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
    ]
    failed = [e["params"] for e in events if e["method"] == "Network.loadingFailed"]
    assert "heart-disease" in title
    assert charts >= 6
    assert requested == [html_path.as_uri()]
    assert failed == [] and console == []
