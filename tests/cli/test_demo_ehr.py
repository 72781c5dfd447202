from __future__ import annotations

import json
from pathlib import Path

from medfed.cli.demo_ehr import WITHHELD, run_ehr_demo
from medfed.data.heart_disease import HEART_HOSPITALS


def test_ehr_demo_trains_on_consented_patients_loaded_from_fhir(tmp_path: Path) -> None:
    out = tmp_path / "report"

    status = run_ehr_demo(out, rounds=2, workdir=tmp_path / "consortium")

    assert status.state == "completed", status.message
    doc = json.loads((out / "metrics.json").read_text())
    sites = doc["ehr"]["sites"]
    assert set(sites) == set(HEART_HOSPITALS)
    assert all(s["withheld"] == WITHHELD for s in sites.values())
    for per_site in doc["ehr"]["consented_n_per_round"].values():
        assert per_site == {site: float(s["patients"] - WITHHELD) for site, s in sites.items()}
    store = tmp_path / "consortium" / "nodes" / "cleveland" / "state" / "omop.duckdb"
    assert store.exists()  # the node config's default OMOP store, loaded from FHIR
