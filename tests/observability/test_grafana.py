from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from medfed.coordinator.directory import NodeDirectory
from medfed.observability.coordinator import CoordinatorMetrics
from medfed.observability.node import NodeMetrics
from medfed.store.state import StateStore

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "medfed.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def test_every_series_the_grafana_dashboard_charts_is_exported(tmp_path: Path) -> None:
    state = StateStore.sqlite(tmp_path / "state.db")
    coordinator = CoordinatorMetrics()
    coordinator.watch(state, NodeDirectory(20.0))
    node = NodeMetrics()
    series = exported(generate_latest(coordinator.registry).decode())
    series |= exported(generate_latest(node.registry).decode())
    state.close()

    doc = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in doc["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\bmedfed_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard charts nothing"
    assert queried <= series, queried - series
    assert {"medfed_rounds_committed_total", "medfed_replies_rejected_total"} <= queried
    assert any(name.startswith("medfed_node_") for name in queried)
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
