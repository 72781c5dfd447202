from __future__ import annotations

import json
from pathlib import Path

from medfed.cli.demo import run_demo


def test_demo_runs_a_real_study_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "report"

    run_demo(out, rounds=2, workdir=tmp_path / "consortium")

    doc = json.loads((out / "metrics.json").read_text())
    assert doc["state"] == "completed"
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    assert set(doc["rounds"][-1]["per_hospital"]) == {
        "cleveland",
        "hungary",
        "switzerland",
        "va_long_beach",
    }
    names = [b["name"] for b in doc["baselines"]]
    assert names[0] == "federated (this run)" and "pooled (centralised)" in names
    assert doc["flamby_published"]
    assert (out / "accuracy_per_round.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = tmp_path / "consortium" / "logs"
    assert {p.name for p in logs.iterdir()} >= {"coordinator.log", "cleveland.log"}
