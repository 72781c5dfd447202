from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.data.omop.store import open_store
from medfed.node.config import load_node_config
from tests.data.omop.cohort_rows import CORONARY, SBP, Patient, days, insert
from tests.data.omop.test_features_registry import SPEC

runner = CliRunner()


def test_steward_registers_a_spec_over_the_node_omop_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    init = ["node", "init", "--name", "cleveland", "--coordinator", "fl.example.org:7443"]
    assert runner.invoke(root, [*init, "--certs", "certs", "--out", "node.toml"]).exit_code == 0
    store = open_store(load_node_config(tmp_path / "node.toml").omop_location)
    store.create()
    insert(
        store,
        [
            Patient(
                f"p{i}",
                dt.date(1950, 1, 1),
                measurements=[(SBP, days(0), 120.0, None)],
                conditions=[(CORONARY, days(0))] if i % 2 else [],
            )
            for i in range(6)
        ],
    )
    store.close()
    (tmp_path / "heart.toml").write_text(SPEC, encoding="utf-8")
    args = ["node", "dataset", "add-omop", "heart", "--spec", "heart.toml", "--config", "node.toml"]

    added = runner.invoke(root, args)
    listed = runner.invoke(root, ["node", "dataset", "list", "--config", "node.toml"])
    again = runner.invoke(root, args)

    assert added.exit_code == 0, added.output
    assert "registered heart: 6 rows (6 train, 0 test), 3 features, spec " in added.output
    assert "omop" in listed.output
    assert again.exit_code != 0 and "already registered" in again.output
