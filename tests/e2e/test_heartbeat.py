from __future__ import annotations

import time

from medfed.data.registry import DatasetRegistry
from tests.e2e.harness import Network


def _datasets(network: Network, node: str) -> set[str]:
    return {d for n in network.admin.nodes() if n.name == node for d in n.datasets}


def test_a_dataset_registered_while_running_is_announced_without_restart(
    network: Network,
) -> None:
    network.start_coordinator()
    network.start_nodes(["cleveland"])
    assert _datasets(network, "cleveland") == {"heart_disease"}
    state = network.consortium.node_state("cleveland")
    entry = DatasetRegistry(state).get("heart_disease")

    DatasetRegistry(state).add(
        "heart_copy", entry.path, label=entry.label, split_column="split", now=time.time()
    )

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "heart_copy" not in _datasets(network, "cleveland"):
        time.sleep(0.1)
    assert _datasets(network, "cleveland") == {"heart_disease", "heart_copy"}


def test_a_node_that_stops_heartbeating_goes_offline(network: Network) -> None:
    network.start_coordinator()
    network.start_nodes(["hungary"])
    network.stop_node("hungary")

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not any(n.online for n in network.admin.nodes() if n.name == "hungary"):
            break
        time.sleep(0.2)
    assert [n.online for n in network.admin.nodes() if n.name == "hungary"] == [False]
