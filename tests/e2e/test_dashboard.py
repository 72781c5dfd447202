from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.model.bundle import read_bundle
from medfed.node.client import AGENT_VERSION
from medfed.node.policy import LocalPolicy
from medfed.web.app import create_app
from medfed.web.server import DashboardServer, check_binding
from tests.e2e.harness import Network, small_study
from tests.web.chromium import chromium, network_events, screenshot, severe_console


@contextmanager
def dashboard(network: Network) -> Iterator[str]:
    binding = check_binding("127.0.0.1", 0, token="")
    app = create_app(network.admin, allowed_hosts=binding.allowed_hosts())
    server = DashboardServer(app, binding)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _text(browser: object, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)  # type: ignore[attr-defined]


def test_study_page_follows_a_live_study_over_mtls(network: Network, tmp_path: Path) -> None:
    LocalPolicy(network.consortium.node_state("switzerland")).revoke("logistic_regression", "1")
    network.start_coordinator()
    study_id = network.submit(small_study(rounds=3))  # no hospital online yet: it waits

    with dashboard(network) as base, chromium() as browser:
        browser.get(f"{base}/studies/{study_id}")
        assert _text(browser, "round-counter") == "0"
        browser.execute_script("window.medfedNoReload = true;")
        network.start_nodes()

        counters = ["0"]

        def finished(driver: object) -> bool:
            counter, state = driver.execute_script(  # type: ignore[attr-defined]
                "return [document.getElementById('round-counter').textContent,"
                " document.getElementById('state').textContent];"
            )  # one read: the page updates both at once
            counters.append(counter)
            return bool(state == "completed")

        WebDriverWait(browser, 60, poll_frequency=0.1).until(finished)
        status = network.admin.status(study_id)

        assert browser.execute_script("return window.medfedNoReload === true;")
        assert counters[-1] == "3", counters
        assert [int(c) for c in counters] == sorted(int(c) for c in counters)
        evaluated = {m.node for r in status.rounds for m in r.per_node}
        assert {"cleveland", "hungary", "va_long_beach"} <= evaluated
        curves = browser.execute_script(
            "return window.medfedCharts['chart-sites'].data.datasets"
            ".map(d => [d.label, d.data.length]);"
        )
        assert {label for label, _ in curves} == evaluated
        assert all(points == 3 for _, points in curves), curves
        table = _text(browser, "table-sites") or browser.execute_script(
            "return document.getElementById('table-sites').textContent;"
        )
        assert all(name in table for name in evaluated)
        refusals = _text(browser, "refusals")
        assert "switzerland" in refusals and "plan_not_approved" in refusals
        assert "is not approved by this hospital" in refusals
        assert _text(browser, "spec-sha256") and _text(browser, "ledger-head")
        link = browser.find_element(By.ID, "download").get_attribute("href")
        bundle_path = tmp_path / "model.safetensors"
        bundle_path.write_bytes(httpx.get(str(link), timeout=30).raise_for_status().content)
        bundle = read_bundle(bundle_path)
        assert bundle.info.study_id == study_id and bundle.info.round == 3
        assert bundle.info.spec_sha256 == _text(browser, "spec-sha256")
        assert screenshot(browser, "dashboard-study.png").stat().st_size > 0

        browser.get(base + "/")
        WebDriverWait(browser, 10).until(lambda d: "va_long_beach" in _text(d, "nodes"))
        nodes = _text(browser, "nodes")
        assert nodes.count("online") == 4, nodes
        assert nodes.count(AGENT_VERSION) == 4 and "not reported" not in nodes, nodes
        assert study_id in _text(browser, "studies")
        screenshot(browser, "dashboard-consortium.png")

        failed = [e for e in network_events(browser) if e["method"] == "Network.loadingFailed"]
        requested = {
            e["params"]["request"]["url"]
            for e in network_events(browser)
            if e["method"] == "Network.requestWillBeSent"
        }
        assert not [u for u in requested if not u.startswith((base, "data:"))], requested
        assert severe_console(browser) == []
        assert not failed

        # medfed study report, from the same coordinator, opens offline with no request
        report_dir = tmp_path / "report"
        args = ["study", "report", study_id, "--config", str(network.consortium.admin_config)]
        result = CliRunner().invoke(root, [*args, "--out", str(report_dir)])
        assert result.exit_code == 0, result.output
        document = json.loads((report_dir / "report.json").read_text())
        assert document["study"]["completed_rounds"] == 3
        assert set(document["study"]["per_hospital"]["accuracy"]) == evaluated
        browser.set_network_conditions(
            offline=True, latency=0, download_throughput=0, upload_throughput=0
        )
        page = (report_dir / "report.html").resolve().as_uri()
        browser.get(page)
        assert (
            "switzerland"
            in browser.find_element(By.ID, "refusals").find_element(By.XPATH, "..").text
        )
        events = network_events(browser)
        requested = [
            e["params"]["request"]["url"]
            for e in events
            if e["method"] == "Network.requestWillBeSent"
        ]
        assert requested == [page]
        assert not [e for e in events if e["method"] == "Network.loadingFailed"]
        screenshot(browser, "study-report-e2e.png")
