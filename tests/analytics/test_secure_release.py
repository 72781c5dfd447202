from __future__ import annotations

import numpy as np
import pytest

from medfed.analytics.combine import combine
from medfed.analytics.disclosure import protect_chain
from medfed.analytics.histogram import merged_counts
from medfed.analytics.secure_release import PooledRelease, pooled_table, release
from medfed.analytics.secure_table import layout, site_vector, split
from medfed.analytics.site import fine_histograms, summarize
from medfed.analytics.spec import StatsSpec
from medfed.analytics.summary import ContinuousSummary
from medfed.analytics.table1 import ContinuousBlock, Table1
from medfed.errors import ConfigError
from tests.analytics.test_secure_table import FEATURES, SECURE_COLUMNS, masked_sum

COARSE = StatsSpec(bins={"age": (40.0, 55.0, 70.0)}, group="disease")
FINE = StatsSpec(bins={"age": tuple(float(e) for e in range(25, 85, 5))}, group="disease")
STEPS = ("entry event", "age >= 18", "no feature missing")


def site_rows(seed: int, n: int, normal: bool = False) -> np.ndarray:
    """Ages uniform in (41, 69) (every coarse bin well filled), or normal(55, 9) (thin tails)."""
    rng = np.random.default_rng(seed)
    ages = rng.normal(55.0, 9.0, n) if normal else rng.uniform(41.0, 69.0, n)
    return np.column_stack([ages, rng.integers(0, 2, n), rng.integers(0, 2, n)]).astype(np.float64)


def run(data, spec, ks=None, chains=None):
    """Each site summarizes and encodes; the coordinator sees the sum and releases."""
    ks = ks or [5] * len(data)
    lay = layout(spec, FEATURES)
    clear, vectors = [], []
    for i, x in enumerate(data):
        steps = list(zip(spec.attrition, chains[i], strict=True)) if chains else ()
        s = summarize(x, SECURE_COLUMNS, spec, ks[i], site=f"h{i}", attrition=steps)
        fine = fine_histograms(x, SECURE_COLUMNS, spec)
        vectors.append(site_vector(s, spec, lay, fine, chains[i] if chains else ()))
        clear.append(s)
    sums = masked_sum(vectors)
    released = release(sums, spec, lay, len(data))
    table = pooled_table(sums[: lay.released_size], spec, lay, len(data), released)
    return clear, sums, released, table


def age(table: Table1) -> ContinuousBlock:
    block = next(b for b in table.features if b.name == "age")
    assert isinstance(block, ContinuousBlock)
    return block


def test_pooled_quartiles_equal_the_clear_ones_when_no_site_merges_bins():
    data = [site_rows(i, n) for i, n in enumerate((300, 120, 60))]
    clear, _, released, table = run(data, COARSE)
    for s in clear:  # the precondition: every site released its fine bins unmerged
        f = next(f for f in s.features if isinstance(f, ContinuousSummary))
        assert f.boundaries == (0, 1, 2, 3, 4) and None not in f.histogram

    theirs = age(combine(clear, COARSE))
    ours = age(table)

    assert released.histograms["age"][0] == (0, 1, 2, 3, 4)
    for c in range(len(theirs.pooled)):
        want, got = theirs.pooled[c].quartiles, ours.pooled[c].quartiles
        assert want is not None and got is not None
        for w, g in ((want.q1, got.q1), (want.median, got.median), (want.q3, got.q3)):
            assert (g.low, g.high) == (w.low, w.high)
            assert g.estimate == pytest.approx(w.estimate, rel=1e-12)
    everyone = np.concatenate([x[:, 0] for x in data])
    median = ours.pooled[0].quartiles
    assert median is not None
    assert median.median.low <= np.quantile(everyone, 0.5) <= median.median.high


def test_the_pooled_histogram_is_merged_until_no_bin_is_below_the_largest_declared_k():
    data = [site_rows(i, n, normal=True) for i, n in enumerate((200, 90, 40))]

    _, sums, released, table = run(data, FINE, ks=[5, 5, 9])

    assert released.k == 9
    bounds, counts = released.histograms["age"]
    assert len(bounds) < len(FINE.bins["age"]) + 2  # something had to merge
    lay = layout(FINE, FEATURES)
    pooled_fine = np.rint(split(sums, lay)["hist/age"]).astype(np.int64)
    assert [col is None for col in counts] == [False, False, False, True]  # nobody is missing
    for c, col in enumerate(counts[:3]):
        assert col is not None
        assert list(col) == merged_counts(pooled_fine[:, c], bounds).tolist()
        assert all(v == 0 or v >= 9 for v in col)
    everyone = np.concatenate([x[:, 0] for x in data])
    for q, stat in ((0.25, "q1"), (0.5, "median"), (0.75, "q3")):
        quartiles = age(table).pooled[0].quartiles
        assert quartiles is not None
        quant = getattr(quartiles, stat)
        assert quant.low <= np.quantile(everyone, q) <= quant.high


def test_the_study_floor_raises_the_pooled_k_and_a_k_above_the_slots_is_refused():
    data = [site_rows(i, n) for i, n in enumerate((300, 120))]
    floor = StatsSpec(bins=COARSE.bins, group="disease", k_floor=12)
    assert run(data, floor)[2].k == 12
    big = [site_rows(i, 400) for i in range(2)]
    with pytest.raises(ConfigError, match="cannot be declared"):
        run(big, StatsSpec(bins=COARSE.bins), ks=[5, 150])


def test_a_column_some_site_hid_part_of_gets_no_pooled_histogram():
    data = [site_rows(i, n) for i, n in enumerate((300, 120, 60))]
    no = np.flatnonzero(data[2][:, 2] == 0)[:3]
    data[2][no, 0] = np.nan  # 3 missing ages in one stratum: that site hides the cell

    _, sums, released, table = run(data, COARSE)

    lay = layout(COARSE, FEATURES)
    hidden = split(sums, lay)["cont/age/count#hidden"][0]
    assert hidden.any() and not hidden.all()
    counts = released.histograms["age"][1]
    present = split(sums, lay)["cont/age/count"][0]
    for c, h in enumerate(hidden):
        shown = not h and present[c] > 0
        assert (counts[c] is not None) == shown
        assert (age(table).pooled[c].quartiles is not None) == shown
    assert any(c is not None for c in counts)


def test_pooled_attrition_is_the_sum_of_the_chains_with_small_removals_suppressed():
    spec = StatsSpec(bins=COARSE.bins, group="disease", attrition=STEPS)
    data = [site_rows(i, n) for i, n in enumerate((300, 120, 60))]
    chains = [[330, 310, 300], [150, 121, 120], [61, 60, 60]]

    _, _, released, table = run(data, spec, chains=chains)

    pooled = [sum(c) for c in zip(*chains, strict=True)]  # 541, 491, 480: removed 50, 11
    assert released.attrition == ((541, None), (491, 50), (480, 11))
    assert [line.name for line in table.attrition] == list(STEPS)
    assert [line.pooled[0].value for line in table.attrition] == pooled
    assert all(line.pooled[0].exact for line in table.attrition)

    small = [[302, 300, 300], [122, 120, 120], [60, 60, 60]]  # the pool removes 4, then 0
    _, _, released, table = run(data, spec, chains=small)
    assert released.attrition == protect_chain([484, 480, 480], 5)
    assert released.attrition[1][1] is None and released.attrition[0][0] is None
    assert table.attrition[-1].pooled[0].value == 480


def test_a_chain_with_other_steps_than_the_query_names_is_refused_at_the_site():
    spec = StatsSpec(bins=COARSE.bins, group="disease", attrition=STEPS)
    x = site_rows(0, 100)
    with pytest.raises(ConfigError, match="attrition steps"):
        summarize(x, SECURE_COLUMNS, spec, 5, site="h0", attrition=[("entry event", 100)])
    with pytest.raises(ConfigError, match="attrition steps"):
        summarize(x, SECURE_COLUMNS, spec, 5, site="h0")


def test_the_release_round_trips_and_the_stored_sum_holds_no_exact_bin_counts():
    spec = StatsSpec(bins=FINE.bins, group="disease", attrition=STEPS)
    data = [site_rows(i, n, normal=True) for i, n in enumerate((200, 90))]
    chains = [[230, 210, 200], [100, 95, 90]]
    _, sums, released, table = run(data, spec, chains=chains)
    lay = layout(spec, FEATURES)

    again = PooledRelease.from_json(released.to_json())
    stored = sums[: lay.released_size]

    assert again == released
    assert set(split(stored, lay)) == {k for k, _ in lay.blocks[: lay.released]}
    assert not any(k.startswith(("hist/", "attrition", "k")) for k in split(stored, lay))
    assert pooled_table(stored, spec, lay, 2, again) == table
    assert spec.to_json()["attrition"] == list(STEPS)
    assert StatsSpec.from_json(spec.to_json()) == spec
    assert "attrition" not in FINE.to_json()  # earlier queries keep their fingerprint
