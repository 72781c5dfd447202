import dataclasses

import numpy as np
import pytest

from medfed.cli.study import prepare
from medfed.coordinator.coalitions import weighted_metric
from medfed.data.heart_disease import heart_disease_centres
from medfed.demo.heart import heart_study
from medfed.errors import ConfigError
from medfed.governance.reputation import PRIOR, reputations
from medfed.governance.rewards import study_rewards
from medfed.simulation.contributions import noisy_labels, simulate_with_contributions
from medfed.training.plan import EvalResult

NOISY = "hungary"
ROUNDS = 4


@pytest.fixture(scope="module")
def noisy_run():
    sites = heart_disease_centres()
    sites[NOISY] = noisy_labels(sites[NOISY], np.random.default_rng(7))
    spec, init = prepare(dataclasses.replace(heart_study(), rounds=ROUNDS))
    return simulate_with_contributions(spec, sites, init, np.random.default_rng(0), method="gtg")


def test_the_site_holding_label_noise_contributes_least(noisy_run):
    assert [r.round for r in noisy_run.rounds] == list(range(1, ROUNDS + 1))
    for entry in noisy_run.rounds:
        others = [v for site, v in entry.values.items() if site != NOISY]
        assert entry.values[NOISY] < min(others), entry
    totals = noisy_run.totals()
    others = [v for site, v in totals.items() if site != NOISY]
    # measured: hungary about -0.4 AUC points over 4 rounds, the others above -0.01
    assert totals[NOISY] < -0.1
    assert totals[NOISY] < min(others) - 0.1


def test_its_reputation_falls_below_the_prior_and_the_others(noisy_run):
    found = reputations(noisy_run.site_rounds())
    assert found[NOISY].score < PRIOR - 0.1
    assert all(found[NOISY].score < r.score - 0.1 for s, r in found.items() if s != NOISY)


def test_the_noisy_site_earns_no_reward(noisy_run):
    points = study_rewards(1000, [r.values for r in noisy_run.rounds])
    assert sum(points.values()) == 1000
    assert points[NOISY] == 0


def test_the_grand_coalition_is_the_committed_model(noisy_run):
    """U(N) evaluates the coalition of every site aggregated again: it must be the model the
    round actually committed (same strategy, same weights)."""
    last = noisy_run.rounds[-1]
    committed = weighted_metric(noisy_run.simulation.evaluate(), "auc")
    assert last.after == pytest.approx(committed, abs=1e-9)
    assert sum(last.values.values()) == pytest.approx(last.after - last.before, abs=0.01)


def test_exact_and_leave_one_out_on_two_sites():
    centres = heart_disease_centres()
    sites = {"cleveland": centres["cleveland"], "va_long_beach": centres["va_long_beach"]}
    spec, init = prepare(dataclasses.replace(heart_study(), rounds=1, min_nodes=1))
    rng = np.random.default_rng(0)
    exact = simulate_with_contributions(spec, sites, init, rng, method="exact", metric="loss")
    loo = simulate_with_contributions(spec, sites, init, rng, method="leave_one_out")
    (entry,) = exact.rounds
    assert entry.evaluations == 4
    assert sum(entry.values.values()) == pytest.approx(entry.after - entry.before, abs=1e-9)
    assert entry.after > entry.before  # a round of training lowered the loss
    assert loo.rounds[0].evaluations == 3


def test_weighted_metric_weighs_examples_and_negates_loss():
    results = {
        "a": EvalResult(10, {"auc": 0.9, "loss": 0.2}),
        "b": EvalResult(30, {"auc": 0.5, "loss": 0.6}),
        "c": EvalResult(5, {"loss": 1.0}),  # one class only: no AUC
    }
    assert weighted_metric(results, "auc") == pytest.approx(0.6)
    assert weighted_metric(results, "loss") == pytest.approx(-(2 + 18 + 5) / 45)
    with pytest.raises(ConfigError, match="accuracy"):
        weighted_metric(results, "accuracy")


@pytest.mark.parametrize(
    "overrides",
    [{"strategy": "scaffold"}, {"secure_aggregation": True, "min_nodes": 2}],
)
def test_strategies_needing_what_the_simulation_cannot_see_are_refused(overrides):
    spec, init = prepare(dataclasses.replace(heart_study(), rounds=1, **overrides))
    with pytest.raises(ConfigError, match="cannot see"):
        simulate_with_contributions(spec, heart_disease_centres(), init, np.random.default_rng(0))
