from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.data.registry import DatasetRegistry
from tests.e2e.harness import Network

HEADER = "age,target,split\n"
BOTH = "50,1,train\n60,0,train\n70,1,test\n40,0,test\n"
TEST_ALL_NEGATIVE = "50,1,train\n60,0,train\n70,0,test\n40,0,test\n45,0,test\n"
TRAIN_ALL_POSITIVE = "50,1,train\n60,1,train\n70,1,test\n40,0,test\n"


def _csv(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "site.csv"
    path.write_text(HEADER + rows)
    return path


def _add(tmp_path: Path, rows: str) -> list[str]:
    heard: list[str] = []
    entry = DatasetRegistry(tmp_path / "state").add(
        "heart", _csv(tmp_path, rows), label="target", split_column="split", now=0.0,
        warn=heard.append,
    )  # fmt: skip
    assert entry.rows == len(rows.splitlines())  # a warning, never a refusal
    return heard


def test_a_one_class_test_split_is_named_with_its_class(tmp_path: Path) -> None:
    heard = _add(tmp_path, TEST_ALL_NEGATIVE)
    assert len(heard) == 1
    assert "dataset 'heart'" in heard[0] and "test split" in heard[0]
    assert "all 3 rows are 0" in heard[0] and "'target'" in heard[0]


def test_a_one_class_training_split_is_named_with_its_class(tmp_path: Path) -> None:
    heard = _add(tmp_path, TRAIN_ALL_POSITIVE)
    assert len(heard) == 1 and "training split" in heard[0] and "all 2 rows are 1" in heard[0]


def test_two_classes_in_both_splits_raise_no_warning(tmp_path: Path) -> None:
    assert _add(tmp_path, BOTH) == []


def test_without_a_listener_the_warning_goes_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medfed.data"):
        DatasetRegistry(tmp_path / "state").add(
            "heart", _csv(tmp_path, TEST_ALL_NEGATIVE), label="target", split_column="split",
            now=0.0,
        )  # fmt: skip
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "test split" in caplog.records[0].getMessage()


def test_dataset_add_prints_the_warning_and_registers(network: Network, tmp_path: Path) -> None:
    config = str(network.consortium.node_configs["cleveland"])
    result = CliRunner().invoke(root, [
        "node", "dataset", "add", "one_class", "--config", config,
        "--csv", str(_csv(tmp_path, TEST_ALL_NEGATIVE)), "--label", "target",
        "--split-column", "split",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "test split" in result.stderr
    assert "registered one_class: 5 rows" in result.stdout
