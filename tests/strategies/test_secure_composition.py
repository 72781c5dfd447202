"""One declaration per strategy says whether it composes with secure aggregation; submission, the
CLI and the README all say the same (issue: three lists had drifted apart)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.coordinator.replies import build_strategy
from medfed.demo.heart import heart_study
from medfed.errors import StrategyError
from medfed.strategies.registry import STRATEGY_NAMES, secure_aggregation
from tests.strategies.test_strategy_classes import PARAMS

README = Path(__file__).resolve().parents[2] / "README.md"
SECURE_PARAMS = PARAMS | {"dpfedavg": {"clip_norm": 1.0, "noise_multiplier": 0.5, "distributed": 1}}


def readme_table() -> dict[str, str]:
    """Strategy name -> its 'with secure aggregation' cell, from the README's strategy table."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| strategy | what it is for | parameters | with secure aggregation |")
    cells: dict[str, str] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        columns = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`([a-z_]+)`", columns[0]):
            cells[name] = columns[-1]
    return cells


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_submission_accepts_exactly_the_strategies_declared_to_compose(name: str) -> None:
    spec = dataclasses.replace(
        heart_study(), secure_aggregation=True, strategy=name, strategy_params=SECURE_PARAMS[name]
    )
    if secure_aggregation(name).composes:
        assert build_strategy(spec).name == name
    else:
        with pytest.raises(StrategyError, match=re.escape(secure_aggregation(name).why)):
            build_strategy(spec)


def test_the_readme_table_says_what_the_registry_declares() -> None:
    cells = readme_table()
    assert sorted(cells) == sorted(STRATEGY_NAMES)
    for name, cell in cells.items():
        word = "composes" if secure_aggregation(name).composes else "refused"
        assert cell.split(" ")[0] == word, (name, cell)


def test_the_strategies_command_prints_the_declaration() -> None:
    result = CliRunner().invoke(root, ["study", "strategies"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for name in STRATEGY_NAMES:
        row = next(line for line in result.output.splitlines() if f" {name} " in line)
        word = "composes" if secure_aggregation(name).composes else "refused"
        assert word in row, row
