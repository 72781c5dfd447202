import itertools
import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import RDPAccountant

from medfed.errors import ConfigError
from medfed.privacy.accounting import (
    MIN_NOISE_MULTIPLIER,
    PLD_DISCRETIZATION_INTERVAL,
    dpsgd_epsilon,
    gaussian_epsilon,
    noise_for_epsilon,
)


def _direct(z: float, q: float, steps: int, delta: float, accountant: str) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps
    )
    if accountant == "rdp":
        engine = rdp.RdpAccountant()
    else:
        engine = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION_INTERVAL)
    engine.compose(event)
    return float(engine.get_epsilon(delta))


def _exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """Exact epsilon of a mu-GDP Gaussian mechanism (Balle & Wang 2018, Thm. 8), by bisection.

    delta(eps) = Phi(-eps/mu + mu/2) - e^eps * Phi(-eps/mu - mu/2), decreasing in eps.
    """

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    def delta_of(eps: float) -> float:
        return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)

    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


@settings(max_examples=30, deadline=None)
@given(
    target=st.floats(0.3, 10.0),
    delta=st.floats(1e-7, 1e-3),
    sample_rate=st.floats(0.005, 0.5),
    steps=st.integers(1, 3000),
)
def test_noise_for_epsilon_never_overshoots_and_is_near_tight(target, delta, sample_rate, steps):
    precision = 0.01
    sigma = noise_for_epsilon(target, delta, sample_rate, steps, precision=precision)
    assert dpsgd_epsilon(sigma, sample_rate, steps, delta) <= target
    if sigma > MIN_NOISE_MULTIPLIER:
        assert dpsgd_epsilon(sigma * (1 - 2 * precision), sample_rate, steps, delta) > target


def test_noise_for_epsilon_with_pld_never_overshoots():
    sigma = noise_for_epsilon(2.0, 1e-5, 0.05, 500, accountant="pld")
    assert dpsgd_epsilon(sigma, 0.05, 500, 1e-5, "pld") <= 2.0
    assert dpsgd_epsilon(sigma * 0.98, 0.05, 500, 1e-5, "pld") > 2.0


def test_noise_for_epsilon_is_lower_for_the_tighter_pld_accountant():
    assert noise_for_epsilon(2.0, 1e-5, 0.05, 500, "pld") < noise_for_epsilon(
        2.0, 1e-5, 0.05, 500, "rdp"
    )


def test_noise_for_epsilon_handles_full_batches_and_no_steps():
    sigma = noise_for_epsilon(5.0, 1e-5, 1.0, 10)
    assert dpsgd_epsilon(sigma, 1.0, 10, 1e-5) <= 5.0
    assert noise_for_epsilon(5.0, 1e-5, 0.1, 0) == 0.0


def test_noise_for_epsilon_stops_at_its_lower_bound_for_a_loose_target():
    assert noise_for_epsilon(500.0, 1e-5, 0.01, 10) == MIN_NOISE_MULTIPLIER
    assert dpsgd_epsilon(MIN_NOISE_MULTIPLIER, 0.01, 10, 1e-5) <= 500.0


def test_noise_for_epsilon_refuses_an_unreachable_target():
    # RDP at delta 1e-5 cannot certify epsilon far below ~0.0035 (its largest order is 1024).
    with pytest.raises(ConfigError, match="raise the target epsilon"):
        noise_for_epsilon(1e-4, 1e-5, 0.01, 1000)


@pytest.mark.parametrize(
    ("z", "q", "steps", "delta", "accountant"),
    [
        (1.1, 0.01, 1000, 1e-5, "rdp"),
        (0.8, 0.2, 37, 1e-6, "rdp"),
        (3.0, 0.003, 20000, 1e-7, "rdp"),
        (1.1, 0.01, 1000, 1e-5, "pld"),
    ],
)
def test_epsilon_is_dp_accountings_for_the_same_events(z, q, steps, delta, accountant):
    assert dpsgd_epsilon(z, q, steps, delta, accountant) == _direct(z, q, steps, delta, accountant)


@pytest.mark.parametrize(
    ("z", "q", "steps", "delta"),
    [(1.0, 0.01, 1000, 1e-5), (4.0, 0.01, 10000, 1e-5), (0.9, 0.004, 25000, 1e-6)],
)
def test_rdp_epsilon_agrees_with_opacus(z, q, steps, delta):
    # Both compute the subsampled Gaussian's RDP (Mironov, Talwar & Zhang 2019) and convert it
    # with Balle et al. (2020); they minimise over different order grids (dp_accounting: 1.1-10.9
    # by 0.1, 11-63, 128-1024; opacus: 1.1-10.9 by 0.1, 12-63). Where the best order lies on both
    # grids (moderate noise, small q) the results differ only by floating point, ~1e-6 relative;
    # 1e-4 leaves room for that and still catches any change of mechanism or step count.
    opacus = RDPAccountant()
    opacus.history = [(z, q, steps)]
    assert dpsgd_epsilon(z, q, steps, delta) == pytest.approx(opacus.get_epsilon(delta), rel=1e-4)


@pytest.mark.parametrize(("z", "q", "steps"), [(1.0, 0.01, 1000), (1.0, 0.1, 100)])
def test_pld_is_tighter_than_rdp(z, q, steps):
    assert dpsgd_epsilon(z, q, steps, 1e-5, "pld") <= dpsgd_epsilon(z, q, steps, 1e-5) + 1e-6


def test_abadi_mnist_setting_known_answer():
    # Abadi et al. (2016, Sec. 3.1): q = 0.01, sigma = 4, T = 10000, delta = 1e-5 gives
    # epsilon ~ 1.26 by their moments accountant (integer orders, looser conversion).
    # dp_accounting 0.6.0 returns 1.035490066 with RDP (fractional orders, Balle et al. 2020
    # conversion) and 0.9600 with PLD at interval 1e-3: regression anchors, tight around those.
    rdp_epsilon = dpsgd_epsilon(4.0, 0.01, 10000, 1e-5)
    assert 1.0350 < rdp_epsilon < 1.0360
    assert rdp_epsilon < 1.26
    assert 0.955 < dpsgd_epsilon(4.0, 0.01, 10000, 1e-5, "pld") < 0.965


def test_more_steps_cost_more_epsilon():
    epsilons = [dpsgd_epsilon(1.0, 0.02, steps, 1e-5) for steps in (1, 10, 100, 1000, 10000)]
    assert all(a < b for a, b in itertools.pairwise(epsilons))


def test_more_noise_costs_less_epsilon():
    epsilons = [dpsgd_epsilon(z, 0.02, 500, 1e-5) for z in (0.5, 0.8, 1.0, 2.0, 5.0)]
    assert all(a > b for a, b in itertools.pairwise(epsilons))


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_no_steps_cost_nothing_and_no_noise_is_no_privacy(accountant):
    assert dpsgd_epsilon(1.0, 0.01, 0, 1e-5, accountant) == 0.0
    assert dpsgd_epsilon(0.0, 0.01, 10, 1e-5, accountant) == math.inf
    assert gaussian_epsilon(0.0, 3, 1e-5, accountant=accountant) == math.inf
    assert gaussian_epsilon(1.0, 0, 1e-5, accountant=accountant) == 0.0


def test_gaussian_epsilon_with_much_noise_is_small():
    assert 0 < gaussian_epsilon(50.0, 10, 1e-5) < 0.35


def test_gaussian_epsilon_matches_the_exact_gaussian_mechanism():
    # T rounds of N(0, z^2) on sensitivity 1 are sqrt(T)/z-GDP; its exact epsilon is a lower
    # bound for RDP and close to PLD's (pessimistic, so never below).
    z, rounds, delta = 4.0, 16, 1e-5
    exact = _exact_gaussian_epsilon(math.sqrt(rounds) / z, delta)
    assert gaussian_epsilon(z, rounds, delta) >= exact
    assert exact <= gaussian_epsilon(z, rounds, delta, accountant="pld") <= exact + 0.02


def test_gaussian_epsilon_with_client_sampling_is_the_subsampled_gaussian():
    assert gaussian_epsilon(1.2, 200, 1e-5, sample_rate=0.1) == _direct(1.2, 0.1, 200, 1e-5, "rdp")
    assert gaussian_epsilon(1.2, 200, 1e-5, sample_rate=0.1) < gaussian_epsilon(1.2, 200, 1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dpsgd_epsilon(-1.0, 0.01, 10, 1e-5),
        lambda: dpsgd_epsilon(math.nan, 0.01, 10, 1e-5),
        lambda: dpsgd_epsilon(1.0, 0.0, 10, 1e-5),
        lambda: dpsgd_epsilon(1.0, 1.5, 10, 1e-5),
        lambda: dpsgd_epsilon(1.0, 0.01, -1, 1e-5),
        lambda: dpsgd_epsilon(1.0, 0.01, 2.5, 1e-5),
        lambda: dpsgd_epsilon(1.0, 0.01, True, 1e-5),
        lambda: dpsgd_epsilon(1.0, 0.01, 10, 0.0),
        lambda: dpsgd_epsilon(1.0, 0.01, 10, 1.0),
        lambda: dpsgd_epsilon(1.0, 0.01, 10, 1e-5, "moments"),
        lambda: gaussian_epsilon(-0.5, 3, 1e-5),
        lambda: gaussian_epsilon(1.0, -3, 1e-5),
        lambda: gaussian_epsilon(1.0, 3, 2.0),
        lambda: gaussian_epsilon(1.0, 3, 1e-5, sample_rate=0.0),
        lambda: gaussian_epsilon(1.0, 3, 1e-5, accountant="gdp"),
        lambda: noise_for_epsilon(0.0, 1e-5, 0.01, 10),
        lambda: noise_for_epsilon(math.inf, 1e-5, 0.01, 10),
        lambda: noise_for_epsilon(1.0, 1e-5, 0.01, 10, precision=0.0),
        lambda: noise_for_epsilon(1.0, 0.0, 0.01, 10),
        lambda: noise_for_epsilon(1.0, 1e-5, 2.0, 10),
    ],
)
def test_bad_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()
