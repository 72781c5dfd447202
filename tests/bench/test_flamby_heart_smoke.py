from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bench.loading import load_bench, table_row


@pytest.mark.timeout(60)
def test_quick_run_prints_both_tables_side_by_side(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_json = tmp_path / "heart.json"
    result = load_bench("flamby_heart", monkeypatch).main(["--quick", "--json", str(out_json)])
    text = capsys.readouterr().out

    for label in ("FedAvg", "SCAFFOLD"):
        cells = table_row(text, label)
        ours = [float(x) for x in re.findall(r"\d+\.\d+", " ".join(cells[2:4]))]
        theirs = [float(x) for x in re.findall(r"\d+\.\d+", " ".join(cells[4:6]))]
        assert len(ours) == 4  # mean ± std, pooled test (site / pooled normalization)
        assert len(theirs) == 3  # mean ± std, pooled test
        assert all(0.0 <= v <= 1.0 for v in ours + theirs)
        row = result["table1"][label]
        assert 0.0 <= row["mean_over_local_tests"] <= 1.0
        assert all(0.0 <= a <= 1.0 for run in row["runs"] for a in run["local"])
        assert row["mean_over_local_tests"] == pytest.approx(
            sum(row["runs"][0]["local"]) / 4, abs=1e-12
        )  # one seed: the unweighted mean of the four local test accuracies
    # SCAFFOLD also uploads its control-variate change: twice FedAvg's dense bytes.
    dense = result["table1"]["FedAvg"]["upload_bytes_per_site_round"]
    assert dense == 14 * 4
    assert result["table1"]["SCAFFOLD"]["upload_bytes_per_site_round"] == 2 * dense
    assert "FedBN: not applicable" in text
    assert json.loads(out_json.read_text())["table1"]["FedAvg"]["flamby"]["pooled_test"] > 0
