from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli import study
from medfed.cli.app import root
from medfed.protocol.v1 import medfed_pb2 as pb

runner = CliRunner()


def _status() -> pb.StudyStatus:
    status = pb.StudyStatus(study_id="s-1", state="running", completed_rounds=1)
    status.spec.name = "heart disease across four hospitals, logistic regression"
    summary = status.rounds.add(round=1, selected=4, accepted=4, rejected=0, duration_s=12.25)
    summary.metrics.update({"accuracy": 0.8125, "auc": 0.8875, "loss": 0.4375,
                            "accuracy_min": 0.7125, "accuracy_max": 0.9375,
                            "accuracy_std": 0.0625})  # fmt: skip
    return status


class _FakeClient:
    def status(self, study_id: str) -> pb.StudyStatus:
        return _status()


@contextmanager
def _fake_client(config: Path) -> Iterator[_FakeClient]:
    yield _FakeClient()


def test_status_table_is_not_cropped_when_output_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what a CI runner or a cron job typically reports
    monkeypatch.setattr(study, "_client", _fake_client)

    done = runner.invoke(root, ["study", "status", "s-1", "--config", str(tmp_path / "a.toml")])

    assert done.exit_code == 0, done.output
    assert "…" not in done.output
    row = next(line for line in done.output.splitlines() if "0.812" in line)
    assert "4/4" in row
    assert "12.25" in row  # the last column, on the same line as the accuracy
