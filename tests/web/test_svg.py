from __future__ import annotations

import itertools
import math

from hypothesis import example, given
from hypothesis import strategies as st

from medfed.web import svg

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(finite, finite)
@example(0.0, 5e-324)
@example(3.0, 3.0)
@example(-5e-324, 1e-10)
@example(0.29999999999999993, 1.0)
def test_ticks_cover_the_range_in_equal_ascending_steps(a: float, b: float) -> None:
    low, high = min(a, b), max(a, b)
    ticks = svg.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = [y - x for x, y in itertools.pairwise(ticks)]
    assert all(s > 0 for s in steps)
    assert all(math.isclose(s, steps[0], rel_tol=1e-6, abs_tol=1e-9) for s in steps)
    assert len(ticks) <= 12


def test_chart_text_is_escaped_and_a_single_round_is_drawn() -> None:
    chart = svg.line_chart([svg.Series("<b>St Mary's</b>", [[1, 0.5]])], "t & u", "round", "y")
    assert "<b>" not in chart and "&lt;b&gt;St Mary&#x27;s&lt;/b&gt;" in chart
    assert "t &amp; u" in chart and chart.count("<circle") == 1


def test_no_data_is_said_not_drawn() -> None:
    assert "no data" in svg.line_chart([svg.Series("a", [])], "empty", "round", "y")
    assert "no data" in svg.bar_chart([], [], "empty", "y")
