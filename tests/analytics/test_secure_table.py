from __future__ import annotations

import numpy as np
import pytest

from medfed.analytics.combine import combine
from medfed.analytics.secure_release import pooled_table, release
from medfed.analytics.secure_table import (
    from_words,
    layout,
    site_vector,
    split,
    to_words,
)
from medfed.analytics.site import fine_histograms, summarize
from medfed.analytics.spec import Column, ColumnKind, StatsSpec
from medfed.analytics.table1 import CategoricalBlock, ContinuousBlock, Table1
from medfed.errors import ConfigError
from tests.analytics.test_site import COLUMNS, SPEC, cohort

SECURE_COLUMNS = (COLUMNS[0], Column("sex", ColumnKind.BINARY), COLUMNS[3])  # disease: the group
FEATURES = ("age", "sex", "disease")
SIZES = (300, 120, 60)


def summaries(sizes=SIZES):
    data = [cohort(i, n)[:, [0, 1, 3]] for i, n in enumerate(sizes)]
    return data, [summarize(x, SECURE_COLUMNS, SPEC, 5, site=f"h{i}") for i, x in enumerate(data)]


def vector(summary, x, spec=SPEC, lay=None, steps=()):
    lay = lay or layout(spec, FEATURES)
    return site_vector(summary, spec, lay, fine_histograms(x, SECURE_COLUMNS, spec), steps)


def masked_sum(vectors: list[np.ndarray]) -> np.ndarray:
    """What SecAgg+ unmasks: the words' sum mod 2^32."""
    total = np.zeros(vectors[0].size * 4, dtype=np.uint32)
    for v in vectors:
        total += to_words(v)  # uint32 addition wraps, as the protocol's does
    return from_words(total)


def secure(data, data_summaries, spec: StatsSpec = SPEC) -> Table1:
    lay = layout(spec, FEATURES)
    vectors = [vector(s, x, spec, lay) for s, x in zip(data_summaries, data, strict=True)]
    assert {v.shape for v in vectors} == {(lay.size,)}
    sums = masked_sum(vectors)
    kept = sums[: lay.released_size]
    return pooled_table(kept, spec, lay, len(vectors), release(sums, spec, lay, len(vectors)))


def test_the_layout_follows_from_the_query_alone():
    one, two = layout(SPEC, FEATURES), layout(SPEC, ("age", "sex"))  # the group is the strata
    assert one == two
    assert one.columns == ("overall", "disease=no", "disease=yes", "disease=(missing)")
    assert [k for k, _ in one.blocks][:2] == ["totals", "totals#hidden"]
    with pytest.raises(ConfigError, match="name its features"):
        layout(StatsSpec(bins=SPEC.bins), ())


def test_words_round_trip_signed_fixed_point_sums_exactly():
    rng = np.random.default_rng(7)
    parts = [np.round(rng.normal(0, 1e6, 50), 3) for _ in range(5)]
    parts[0][:3] = (-(2.0**40), 2.0**40, 123456789.0)
    got = masked_sum(parts)
    assert np.allclose(got, np.sum(parts, axis=0), rtol=1e-14, atol=1e-5)
    counts = [np.arange(40, dtype=np.float64) * (i + 1) for i in range(3)]
    assert np.array_equal(masked_sum(counts), np.sum(counts, axis=0))  # counts are exact
    with pytest.raises(ConfigError, match="too large"):
        to_words(np.array([2.0**50]))


def test_the_secure_sum_gives_the_pooled_counts_and_moments_combine_gives():
    data, sums = summaries()
    clear, pooled = combine(sums, SPEC), secure(data, sums)
    assert pooled.sites == () and pooled.k == ()
    cols = {c: i for i, c in enumerate(pooled.columns)}
    for c, name in enumerate(clear.columns):
        assert pooled.totals.pooled[cols[name]] == clear.totals.pooled[c]
    for block in clear.features:
        mine = next(b for b in pooled.features if b.name == block.name)
        if isinstance(block, CategoricalBlock):
            assert isinstance(mine, CategoricalBlock)
            assert [ln.level for ln in mine.lines] == [ln.level for ln in block.lines]
            for theirs, ours in zip(block.lines, mine.lines, strict=True):
                for c, name in enumerate(clear.columns):
                    assert ours.pooled[cols[name]] == theirs.pooled[c]
            continue
        assert isinstance(block, ContinuousBlock) and isinstance(mine, ContinuousBlock)
        assert mine.site_moments == () and mine.present.per_site == ()
        for c, name in enumerate(clear.columns):
            assert mine.present.pooled[cols[name]] == block.present.pooled[c]
            want, got = block.pooled[c], mine.pooled[cols[name]]
            assert got.moments_partial == want.moments_partial
            assert (got.moments is None) == (want.moments is None)
            if want.moments is not None and got.moments is not None:
                assert got.moments.n == want.moments.n
                assert got.moments.mean == pytest.approx(want.moments.mean, rel=1e-9)
                assert got.moments.std == pytest.approx(want.moments.std, rel=1e-6)
    everything = np.concatenate([x[:, 0] for x in data])
    overall = next(b for b in pooled.features if isinstance(b, ContinuousBlock)).pooled[0]
    assert overall.moments is not None and overall.moments.n == everything.size
    assert overall.moments.mean == pytest.approx(everything.mean(), rel=1e-9)


def test_a_suppressed_cell_adds_zero_and_its_indicator_makes_a_lower_bound():
    data, sums = summaries((300, 120, 20))  # the 20-person site hides small cells
    lay = layout(SPEC, FEATURES)
    small = split(vector(sums[2], data[2]), lay)
    hidden = small["cat/sex#hidden"]
    assert hidden.any() and not small["cat/sex"][hidden == 1].any()
    clear, pooled = combine(sums, SPEC), secure(data, sums)
    theirs = next(b for b in clear.features if b.name == "sex")
    ours = next(b for b in pooled.features if b.name == "sex")
    assert isinstance(theirs, CategoricalBlock) and isinstance(ours, CategoricalBlock)
    inexact = [cell for line in ours.lines for cell in line.pooled if not cell.exact]
    assert inexact, "some pooled cell must be a lower bound"
    for t, o in zip(theirs.lines, ours.lines, strict=True):
        assert o.pooled[0] == t.pooled[0]


def test_a_withheld_feature_counts_as_hidden_at_that_site():
    data, sums = summaries()
    lay = layout(SPEC, (*FEATURES, "bmi"))  # no site has a 'bmi' column: hidden everywhere
    vectors = [vector(s, x, lay=lay) for s, x in zip(sums, data, strict=True)]
    table = pooled_table(masked_sum(vectors), SPEC, lay, len(vectors))
    bmi = next(b for b in table.features if b.name == "bmi")
    assert isinstance(bmi, CategoricalBlock)
    assert all(cell.value is None and not cell.exact for ln in bmi.lines for cell in ln.pooled)


def test_levels_other_than_no_yes_do_not_fit_the_layout():
    x = cohort(0, 200)[:, [0, 1, 3]]
    other = summarize(x, (COLUMNS[0], COLUMNS[1], COLUMNS[3]), SPEC, 5, site="h0")  # female/male
    with pytest.raises(ConfigError, match="not a binary no/yes column"):
        site_vector(other, SPEC, layout(SPEC, FEATURES), {})


def test_a_stratum_nobody_is_in_counts_zero_not_hidden():
    x = cohort(0, 200)[:, [0, 1, 3]]
    x[:, 2] = 1.0  # everyone has the disease, nobody lacks the group value
    one = summarize(x, SECURE_COLUMNS, SPEC, 5, site="h0")
    lay = layout(SPEC, FEATURES)
    parts = split(vector(one, x), lay)
    assert parts["totals"].tolist() == [200.0, 0.0, 200.0, 0.0]
    assert not parts["totals#hidden"].any() and not parts["cont/age/shifted#hidden"].any()
