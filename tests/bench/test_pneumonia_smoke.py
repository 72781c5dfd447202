from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bench.loading import load_bench, table_row


@pytest.mark.timeout(120)
def test_quick_run_prints_every_model_on_the_official_test_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_json = tmp_path / "pneumonia.json"

    result = load_bench("pneumonia", monkeypatch).main(["--quick", "--json", str(out_json)])
    text = capsys.readouterr().out

    assert "official test set (624 images)" in text
    for label in ("centralised (pooled images)", "St Mary's alone", "Lakeview alone"):
        accuracy, auc = (float(c) for c in table_row(text, label)[1:3])
        assert 0.0 <= accuracy <= 1.0 and 0.5 < auc <= 1.0  # two epochs already learn something
    federated = [line for line in text.splitlines() if "federated FedAvg" in line]
    assert len(federated) == 1 and len(re.findall(r"\d\.\d{3}", federated[0])) == 2
    run = result["runs"][0]
    assert set(run) >= {"federated", "centralised", "st_marys", "lakeview"}
    assert run["images"] == {"st_marys": 150, "riverside": 150, "northgate": 150, "lakeview": 150}
    assert json.loads(out_json.read_text())["rounds"] == 2
    assert "machine:" in text
