from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.analytics.combine import combine, standardization
from medfed.analytics.moments import from_shifted
from medfed.analytics.report import render, write
from medfed.analytics.site import summarize
from medfed.analytics.spec import StatsSpec
from medfed.analytics.table1 import CategoricalBlock, ContinuousBlock
from medfed.analytics.wire import additive, centre, from_arrays, to_arrays
from medfed.errors import ConfigError, ProtocolError
from medfed.protocol.tensors import check_finite, decode, iter_data, manifest_of
from tests.analytics.test_site import COLUMNS, SPEC, cohort

SIZES = (300, 120, 60)


def sites(seed: int = 0, sizes=SIZES):
    data = [cohort(seed + i, n) for i, n in enumerate(sizes)]
    steps = [[("all", 3 * n), ("adults", n + 2), ("cohort", n)] for n in sizes]
    summaries = [
        summarize(x, COLUMNS, SPEC, 5, site=f"h{i}", attrition=s)
        for i, (x, s) in enumerate(zip(data, steps, strict=True))
    ]
    return data, summaries


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(40, 400), min_size=1, max_size=5))
def test_pooled_moments_and_quartiles_agree_with_numpy_on_all_rows(seed, sizes):
    data, summaries = sites(seed, sizes)
    table = combine(summaries, SPEC)
    age = next(b for b in table.features if isinstance(b, ContinuousBlock))
    pooled = age.pooled[0]
    everything = np.concatenate([x[:, 0] for x in data])
    assert pooled.moments is not None and not pooled.moments_partial
    assert pooled.moments.n == everything.size
    assert np.isclose(pooled.moments.mean, everything.mean(), rtol=1e-9, atol=0)
    assert np.isclose(pooled.moments.std, everything.std(ddof=1), rtol=1e-9, atol=0)
    assert pooled.quartiles is not None
    for got, q in zip(pooled.quartiles.__dict__.values(), (0.25, 0.5, 0.75), strict=True):
        assert got.low <= np.quantile(everything, q) <= got.high


def test_pooled_counts_are_sums_and_hidden_parts_make_lower_bounds():
    data, summaries = sites()
    table = combine(summaries, SPEC)
    assert table.totals.pooled[0].value == sum(SIZES) and table.totals.pooled[0].exact
    pain = next(b for b in table.features if b.name == "chest_pain")
    assert isinstance(pain, CategoricalBlock)
    for line in pain.lines:
        for c, cell in enumerate(line.pooled):
            shown = [site[c] for site in line.per_site if site[c] is not None]
            assert cell.exact == (len(shown) == len(SIZES))
            assert cell.value == (sum(shown) if shown else None)
    rare = next(line for line in pain.lines if line.level == "none")
    assert not rare.pooled[0].exact  # the 3 % level is small at the 60-person site
    true_rare = sum(int(np.sum(x[:, 2] == 3)) for x in data)
    assert rare.pooled[0].value is not None and rare.pooled[0].value <= true_rare


def test_pooled_attrition_hides_nothing_a_site_hid():
    _, summaries = sites()
    table = combine(summaries, SPEC)
    adults = table.attrition[1]
    assert all(left is None for left, _ in adults.per_site)  # each removed only 2 persons
    assert adults.pooled[0].value is None and not adults.pooled[0].exact


def test_standardization_uses_pooled_overall_moments():
    data, summaries = sites()
    everything = np.concatenate([x[:, 0] for x in data])
    mean, std = standardization(combine(summaries, SPEC))["age"]
    assert np.isclose(mean, everything.mean(), rtol=1e-9)
    assert np.isclose(std, everything.std(ddof=1), rtol=1e-9)


def test_standardization_refuses_partial_moments():
    data = [cohort(0, 200), cohort(1, 200)]
    data[1][:2, 0] = np.nan  # two missing: this site withholds its moments
    summaries = [summarize(x, COLUMNS, SPEC, 5, site=f"h{i}") for i, x in enumerate(data)]
    table = combine(summaries, SPEC)
    age = next(b for b in table.features if isinstance(b, ContinuousBlock))
    assert age.pooled[0].moments_partial and age.pooled[0].moment_sites == ("h0",)
    with pytest.raises(ConfigError, match="age"):
        standardization(table)


def test_combine_refuses_mixed_specs_and_duplicate_sites():
    _, summaries = sites()
    with pytest.raises(ConfigError, match="different stats spec"):
        combine(summaries, StatsSpec(bins={"age": (0.0, 100.0)}, group="disease"))
    with pytest.raises(ConfigError, match="one summary"):
        combine([summaries[0], summaries[0]], SPEC)


def test_report_writes_csv_and_json_and_renders_text(tmp_path):
    _, summaries = sites()
    table = combine(summaries, SPEC)
    csv_path, json_path = write(table, tmp_path / "out")
    doc = json.loads(json_path.read_text())
    assert doc["sites"] == ["h0", "h1", "h2"]
    assert len(csv_path.read_text().splitlines()) == len(doc["records"]) + 1
    pooled_n = [r for r in doc["records"] if r["section"] == "cohort" and r["site"] == "pooled"]
    assert [r["value"] for r in pooled_n] == [
        sum(SIZES),
        *[table.totals.pooled[c].value for c in (1, 2)],
    ]
    assert any(r["note"] == "lower bound" for r in doc["records"])
    text = render(table)
    assert "Table 1 — overall" in text and "≥" in text and "pooled" in text


def test_wire_round_trip_is_exact_and_combines_the_same():
    _, summaries = sites()
    back = [from_arrays(*to_arrays(s)) for s in summaries]
    assert back == summaries
    meta = to_arrays(summaries[0])[1]
    assert json.loads(json.dumps(meta)) == meta


def test_wire_arrays_pass_the_tensor_codec():
    _, summaries = sites()
    arrays, meta = to_arrays(summaries[2])
    assert (arrays["cat/chest_pain"] == -1).any()  # hidden cells travel as -1, not NaN
    check_finite(arrays)
    manifest = manifest_of(arrays)
    data = b"".join(bytes(view) for view in iter_data(arrays))
    assert from_arrays(decode(manifest, data), meta) == summaries[2]


def test_wire_refuses_malformed_counts():
    _, summaries = sites()
    arrays, meta = to_arrays(summaries[0])
    arrays["totals"] = arrays["totals"] + 0.5
    with pytest.raises(ProtocolError):
        from_arrays(arrays, meta)
    arrays, meta = to_arrays(summaries[0])
    del arrays["cat/sex"]
    with pytest.raises(ProtocolError):
        from_arrays(arrays, meta)


def test_additive_parts_summed_across_sites_give_the_pooled_table():
    data, summaries = sites()
    table = combine(summaries, SPEC)
    sums = {
        key: sum(additive(s, SPEC)[key] for s in summaries) for key in additive(summaries[0], SPEC)
    }
    pain = next(b for b in table.features if b.name == "chest_pain")
    for r, line in enumerate(pain.lines):
        for c, cell in enumerate(line.pooled):
            assert (sums["cat/chest_pain#hidden"][r, c] == 0) == cell.exact
            if cell.value is not None:
                assert sums["cat/chest_pain"][r, c] == cell.value
    n, s1, s2 = sums["cont/age/shifted"][0]
    pooled = from_shifted(n, s1, s2, centre(SPEC, "age"))
    everything = np.concatenate([x[:, 0] for x in data])
    assert np.isclose(pooled.mean, everything.mean(), rtol=1e-9)
    assert np.isclose(pooled.std, everything.std(ddof=1), rtol=1e-9)
