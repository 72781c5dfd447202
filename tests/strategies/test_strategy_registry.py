import math

import numpy as np
import pytest

from medfed.errors import StrategyError
from medfed.strategies.base import Reply
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.fedprox import FedProx
from medfed.strategies.registry import make_strategy


def test_make_fedavg():
    strategy = make_strategy("fedavg", {})
    assert isinstance(strategy, FedAvg)
    assert strategy.name == "fedavg"


def test_make_fedprox_sends_mu_and_aggregates_like_fedavg():
    strategy = make_strategy("fedprox", {"mu": 0.1})
    assert strategy.name == "fedprox"
    assert strategy.configure_train(3) == {"proximal_mu": 0.1}
    previous = {"w": np.zeros(2, np.float32)}
    updates = [(np.array([1, 2], np.float32), 1.0), (np.array([3, 6], np.float32), 3.0)]
    results = []
    for s in (strategy, FedAvg()):
        acc = s.start_round(previous, {})
        for w, n in updates:
            acc.add(Reply("x", {"w": w}, int(n)))
        results.append(s.aggregate(1, acc, previous, {})[0]["w"])
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("fedsgd", {}, "unknown strategy 'fedsgd'; available: fedavg, fedprox, scaffold"),
        ("fedavg", {"mu": 0.1}, r"takes parameters none; missing \[\], unknown \['mu'\]"),
        ("fedprox", {}, r"takes parameters \['mu'\]; missing \['mu'\]"),
        ("fedprox", {"mu": 0.1, "lr": 1.0}, "takes parameters"),
        ("fedprox", {"mu": -0.1}, "mu must be"),
        ("fedprox", {"mu": math.nan}, "mu must be"),
    ],
)
def test_bad_names_and_params_are_refused(name, params, match):
    with pytest.raises(StrategyError, match=match):
        make_strategy(name, params)


def test_fedprox_with_zero_mu_is_fedavg_with_a_label():
    assert FedProx(0).configure_train(1) == {"proximal_mu": 0.0}
