from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.loading import load_bench


@pytest.mark.timeout(120)
def test_quick_run_accounts_every_step_and_prints_flambys_sweep(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bench = load_bench("dp_heart", monkeypatch)
    out_json = tmp_path / "dp.json"
    result = bench.main(["--quick", "--json", str(out_json)])
    text = capsys.readouterr().out

    dp = result["sweep"]["1 rdp"]
    assert 0.0 < dp["epsilon_spent_max"] <= 1.0  # every local step of both rounds, never over
    assert all(s >= bench.MIN_NOISE_MULTIPLIER for s in dp["noise_multiplier_by_site"].values())
    # The smallest site (Switzerland, 30 rows) samples the most per lot: the most noise.
    sizes = {name: len(d.y_train) for name, d in bench.centres().items()}
    smallest = min(sizes, key=sizes.__getitem__)
    noise = dp["noise_multiplier_by_site"]
    assert noise[smallest] == max(noise.values())
    assert dp["mean_over_local_tests"] == pytest.approx(sum(dp["runs"][0]["local"]) / 4)
    assert result["sweep"]["inf rdp"]["epsilon_spent_max"] is None  # no DP, nothing booked

    # FLamby's e = 1 re-accounted over the 1500 steps it runs spends more than 1.
    assert result["flamby_honest"]["1"]["max"] > 1.0
    assert "Table 2. FLamby's DP sweep" in text
    assert "FLamby under-counts steps" in text
    saved = json.loads(out_json.read_text())
    assert {row["e"] for row in saved["flamby"]} >= {1.0, 10.0}
