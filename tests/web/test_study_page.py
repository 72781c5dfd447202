from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from medfed.web.app import create_app
from medfed.web.server import Binding, DashboardServer
from tests.web.chromium import chromium, screenshot, severe_console
from tests.web.fake import FakeAdmin
from tests.web.sample import HOSPITALS


@contextmanager
def serving(admin: FakeAdmin) -> Iterator[str]:
    server = DashboardServer(create_app(admin), Binding("127.0.0.1", 0, ""))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_study_page_draws_privacy_secure_aggregation_and_escapes_node_text() -> None:
    with serving(FakeAdmin()) as base, chromium() as browser:
        browser.get(f"{base}/studies/s-0123456789ab")
        labels = browser.execute_script(
            "const c = window.medfedCharts; return Object.fromEntries(Object.keys(c).map("
            "k => [k, c[k].data.datasets.map(d => d.label)]));"
        )
        Select(browser.find_element(By.ID, "site-metric")).select_by_value("loss")
        loss_axis = browser.execute_script(
            "return window.medfedCharts['chart-sites'].options.scales.y.title.text;"
        )
        refusals = browser.find_element(By.ID, "refusals").text
        secagg = browser.execute_script(
            "return document.getElementById('table-secagg').textContent;"
        )
        screenshot(browser, "dashboard-study-sample.png")
        console = severe_console(browser)

    assert sorted(labels["chart-sites"]) == sorted(HOSPITALS)
    assert sorted(labels["chart-privacy"]) == sorted(HOSPITALS)
    assert labels["chart-secagg"] == ["advertise", "share", "train+mask", "reveal", "unmask"]
    assert loss_axis == "loss (cross-entropy)"
    assert "<script>alert(1)</script>" in refusals  # shown as text, never run
    assert "dropouts" in secagg
    assert console == []
