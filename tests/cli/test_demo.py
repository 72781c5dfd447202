from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfed.cli.demo import run_demo


def test_demo_runs_a_real_study_and_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"

    run_demo(out, rounds=2, workdir=tmp_path / "consortium")

    said = " ".join(capsys.readouterr().out.split())
    assert "ledger verified with the CA certificate alone" in said and "8 signed updates" in said
    html = (out / "report.html").read_text()
    assert "ledger head" in html and "not exposed by this coordinator yet" not in html

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
    last = doc["rounds"][-1]["metrics"]
    assert "auc" not in last and {"auc_pooled", "auc_site_mean"} <= set(last)
    assert any(name.startswith("<m>_pooled ") for name in doc["metric_names"])
    exact = doc["baselines"][0]["pooled_auc"]  # the final model, over the union of test sets
    assert abs(last["auc_pooled"] - exact) <= last["auc_pooled_bin_error"] + 1e-9
    assert doc["flamby_published"]
    assert (out / "accuracy_per_round.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = tmp_path / "consortium" / "logs"
    assert {p.name for p in logs.iterdir()} >= {"coordinator.log", "cleveland.log"}


def test_imaging_demo_trains_on_dicom_folders_over_mtls(tmp_path: Path) -> None:
    from medfed.cli.demo_imaging import run_imaging_demo

    scores = run_imaging_demo(
        tmp_path / "report", 2, tmp_path / "consortium", hospitals=2, limit=60
    )

    doc = json.loads((tmp_path / "report" / "imaging_metrics.json").read_text())
    assert doc["state"] == "completed" and doc["rounds"] == 2 and doc["test_images"] == 624
    assert set(scores) == {"federated", "centralised", "st_marys", "riverside"}
    assert all(0.0 <= m["auc"] <= 1.0 for m in scores.values())
    folder = tmp_path / "consortium" / "nodes" / "riverside" / "dicom"
    assert len(list((folder / "train").glob("*.dcm"))) == 60
    assert (folder / "labels.csv").read_text().startswith("file,pneumonia,split")
