from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medfed.strategies.registry import make_strategy
from medfed.training.local_update import clip_change

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(
    x=arrays(np.float32, 7, elements=finite),
    y=arrays(np.float32, 7, elements=finite),
    bound=st.floats(1e-3, 1e3),
)
def test_a_clipped_change_never_exceeds_the_bound(x, y, bound):
    out = clip_change(
        {"w": x, "n": np.array([3], np.int64)}, {"w": y, "n": np.array([5], np.int64)}, bound
    )
    change = np.linalg.norm(out["w"].astype(np.float64) - x.astype(np.float64))
    original = np.linalg.norm(y.astype(np.float64) - x.astype(np.float64))
    assert change <= bound * (1 + 1e-6) + 1e-4  # float32 rounding of x + scaled change
    if original <= bound:
        np.testing.assert_array_equal(out["w"], y)  # within the bound: untouched
    else:  # clipped along the same direction
        cos = np.dot(out["w"] - x, y - x) / max(change * original, 1e-30)
        assert change < 1e-4 or cos > 0.999
    assert out["n"][0] == 5  # integer counters are not clipped


def test_a_zero_change_is_clipped_safely():
    x = {"w": np.ones(4, np.float32)}
    out = clip_change(x, {"w": np.ones(4, np.float32)}, 0.5)
    np.testing.assert_array_equal(out["w"], x["w"])


def test_normbound_asks_every_site_to_clip():
    assert make_strategy("normbound", {"max_norm": 0.3}).configure_train(1) == {"clip_norm": 0.3}
