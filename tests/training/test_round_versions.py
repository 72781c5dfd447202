"""Site state is versioned by round: a retried round starts from the same state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfed.node.client_state import FileClientState
from medfed.training.local_update import (
    KEEP_VERSIONS,
    ClientSettings,
    MemoryClientState,
    RoundView,
    local_update,
)
from medfed.training.plan import LocalTrainConfig
from medfed.training.registry import get_plan
from tests.training.synthetic_data import synthetic


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full(3, value, np.float32)}


@pytest.fixture(params=["memory", "file"])
def versions(request: pytest.FixtureRequest, tmp_path: Path):
    return MemoryClientState() if request.param == "memory" else FileClientState(tmp_path, "s")


def test_a_round_reads_what_earlier_rounds_saved_and_writes_its_own(versions) -> None:
    RoundView(versions, 1).save("k", _w(1))
    RoundView(versions, 2).save("k", _w(2))
    assert RoundView(versions, 1).load("k") is None
    np.testing.assert_array_equal(RoundView(versions, 2).load("k")["w"], 1)
    np.testing.assert_array_equal(RoundView(versions, 3).load("k")["w"], 2)
    RoundView(versions, 2).save("k", _w(5))  # round 2 retried: replaces its own version
    np.testing.assert_array_equal(RoundView(versions, 3).load("k")["w"], 5)
    np.testing.assert_array_equal(RoundView(versions, 2).load("k")["w"], 1)


def test_only_the_newest_versions_are_kept(versions) -> None:
    for r in range(1, 6):
        RoundView(versions, r).save("k", _w(r))
    assert RoundView(versions, 6 - KEEP_VERSIONS).load("k") is None
    np.testing.assert_array_equal(versions.load("k")["w"], 5)
    RoundView(versions, 3).save("k", _w(30))  # an older round saved again drops later versions
    np.testing.assert_array_equal(versions.load("k")["w"], 30)


def test_a_retried_scaffold_round_gives_the_same_update_and_advances_c_i_once() -> None:
    plan = get_plan("logistic_regression", "1")
    site = synthetic(3, n=40)
    model = plan.init_weights(site.n_features, 0, {})
    received = model | {f"scaffold/c/{k}": np.full_like(v, 0.01) for k, v in model.items()}
    config = LocalTrainConfig(epochs=0, steps=5, batch_size=8, optimizer="sgd", learning_rate=0.1)
    settings = ClientSettings(algorithm="scaffold")
    versions = MemoryClientState()
    rng = np.random.default_rng
    first = local_update(plan, site, received, config, settings, RoundView(versions, 1), rng(0))
    again = local_update(plan, site, received, config, settings, RoundView(versions, 1), rng(0))
    for name in first.wire:
        np.testing.assert_array_equal(first.wire[name], again.wire[name])
    c_i = RoundView(versions, 2).load("scaffold")
    assert c_i is not None
    for name, change in first.wire.items():
        if name.startswith("scaffold/dc/"):
            np.testing.assert_allclose(c_i[name.removeprefix("scaffold/dc/")], change, atol=1e-7)
