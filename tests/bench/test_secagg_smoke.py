from __future__ import annotations

import pytest

from tests.bench.loading import load_bench, table_row


@pytest.mark.timeout(60)
def test_quick_run_prints_one_row_with_sane_numbers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = load_bench("secagg", monkeypatch).main(["--quick"])
    text = capsys.readouterr().out

    cells = table_row(text, "4")
    assert cells[1] == "10,000" and cells[2] == "3 / 3"
    assert cells[-3:] == ["—", "—", "—"]  # Flower has no n=4, d=10,000 anchor
    assert "Flower" in text and "machine:" in text
    (r,) = results
    assert (r["n"], r["d"], r["degree"], r["threshold"]) == (4, 10_000, 3, 3)
    for key in ("masking_s", "unmask0_s", "unmask20_s", "plain_s", "secure_s"):
        assert r[key] > 0.0
    # advertisement (certificate, signature), 3 sealed shares, 4 d masked bytes, the reveal
    assert 4 * r["d"] + 500 < r["bytes_per_node"] < 4 * r["d"] + 5_000
    assert r["max_error"] < 1e-6  # against the plain float32 mean


def test_flower_anchors_are_the_quoted_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    anchors = load_bench("secagg", monkeypatch).FLOWER_SECAGG_PLUS
    assert anchors[(10, 1_000_000)] == (0.348, 2.585)
    assert anchors[(4, 1_000_000)] == (0.224, 1.040)
