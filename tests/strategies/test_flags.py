from __future__ import annotations

import numpy as np

from medfed.strategies.base import Reply
from medfed.strategies.byzantine import Krum, NormBound
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.flags import round_flags

MODEL = {"w": np.zeros(4, dtype=np.float32)}


def _run(strategy, updates: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    acc = strategy.start_round(MODEL, {})
    for node, w in updates.items():
        acc.add(Reply(node, {"w": w.astype(np.float32)}, 10))
    strategy.aggregate(1, acc, MODEL, {})
    return round_flags(strategy, acc)


def test_krum_flags_the_update_it_leaves_out() -> None:
    honest = {f"h{i}": np.full(4, 0.1 * i) for i in range(4)}
    flags = _run(Krum(f=1, m=4), {**honest, "attacker": np.full(4, 50.0)})
    assert flags == {"attacker": ("krum_outlier",)}


def test_norm_bounding_flags_the_updates_it_clipped() -> None:
    flags = _run(NormBound(max_norm=1.0), {"a": np.full(4, 0.1), "b": np.full(4, 9.0)})
    assert flags == {"b": ("norm_clipped",)}


def test_plain_fedavg_flags_nobody() -> None:
    assert _run(FedAvg(), {"a": np.ones(4), "b": np.full(4, 100.0)}) == {}
