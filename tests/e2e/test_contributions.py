"""Shapley contributions measured over the network: the coordinator builds each coalition's model
from the updates it held and the hospitals evaluate it, over mutual TLS (issue 14)."""

from __future__ import annotations

import json
import time

import numpy as np
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.data.heart_disease import HEART_LABEL
from medfed.data.registry import DatasetRegistry
from medfed.ledger import kinds
from tests.e2e.harness import HOSPITALS, Network, small_study

NOISY = "hungary"
ROUNDS = 2
runner = CliRunner()


def _replace_labels_with_noise(network: Network, node: str) -> None:
    """Hungary's steward registers a file whose every label is a fair coin: data with no signal."""
    spec = small_study()
    state = network.consortium.node_state(node)
    csv = state.parent / "data" / f"{node}.csv"
    lines = csv.read_text().splitlines()
    column = lines[0].split(",").index(HEART_LABEL)
    rng = np.random.default_rng(7)
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[column] = str(int(rng.integers(0, 2)))
    csv.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    registry = DatasetRegistry(state)
    registry.remove(spec.dataset)
    registry.add(spec.dataset, csv, label=HEART_LABEL, features=list(spec.features),
                 split_column="split", now=time.time())  # fmt: skip


def test_the_hospital_holding_label_noise_gets_the_lowest_shapley_value(network: Network) -> None:
    _replace_labels_with_noise(network, NOISY)
    network.start_coordinator()
    network.start_nodes()
    spec = small_study(rounds=ROUNDS, min_nodes=4, contributions="shapley")
    study_id = network.submit(spec)
    status = network.wait_done(study_id, timeout_s=240)
    assert status.state == "completed", status.message

    entries = [json.loads(line) for line in network.admin.ledger(study_id)]
    measured = [e["payload"] for e in entries if e["kind"] == kinds.CONTRIBUTION]
    assert [m["round"] for m in measured] == list(range(1, ROUNDS + 1))
    for m in measured:
        assert "error" not in m, m
        assert m["method"] == "exact" and m["metric"] == "auc"
        assert m["evaluators"] == sorted(HOSPITALS) and m["evaluations"] == 2 ** len(HOSPITALS)
        values = m["values"]
        assert sorted(values) == sorted(HOSPITALS)
        # Shapley is efficient: the values split exactly the round's change in utility
        assert abs(sum(values.values()) - (m["after"] - m["before"])) < 1e-9

    record = next(e["payload"] for e in entries if e["kind"] == kinds.REPUTATION)
    assert record["method"] == "shapley" and record["measured_rounds"] == list(range(1, ROUNDS + 1))
    sites = record["sites"]
    others = [s for s in HOSPITALS if s != NOISY]
    assert sites[NOISY]["value"] < min(sites[s]["value"] for s in others)
    assert sites[NOISY]["reputation"] < min(sites[s]["reputation"] for s in others)
    assert sites[NOISY]["reward_points"] == 0
    assert sum(s["reward_points"] for s in sites.values()) == record["reward_pot"]

    shown = runner.invoke(root, ["study", "status", study_id, "--sites", "--config",
                                 str(network.consortium.admin_config)])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "contributions (shapley)" in shown.output
