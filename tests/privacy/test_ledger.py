from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.errors import ConfigError, PolicyError
from medfed.privacy.ledger import Budget, PrivacyLedger, StudySpend

DELTA = 1e-5
MECH = {"noise_multiplier": 1.1, "sample_rate": 0.01, "delta": DELTA, "accountant": "rdp"}


def fake_epsilon(steps: int) -> float:
    """A stand-in accountant: grows like sqrt(steps), as RDP epsilon roughly does."""
    return 0.05 * math.sqrt(steps)


def spend(
    ledger: PrivacyLedger,
    study: str,
    steps: int,
    epsilon: float | Callable[[int], float],
    *,
    dataset: str = "heart",
    now: float = 0.0,
    **mech: float | str,
) -> StudySpend:
    params = MECH | mech
    return ledger.consume(
        dataset,
        study,
        steps,
        epsilon,
        float(params["noise_multiplier"]),
        float(params["sample_rate"]),
        float(params["delta"]),
        str(params["accountant"]),
        now=now,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "privacy.sqlite"


@pytest.fixture
def ledger(path: Path) -> Iterator[PrivacyLedger]:
    opened = PrivacyLedger(path)
    yield opened
    opened.close()


# -- budgets --------------------------------------------------------------------------------------


def test_budget_is_none_until_set_then_can_be_raised_and_lowered(ledger: PrivacyLedger) -> None:
    assert ledger.budget("heart") is None
    ledger.set_budget("heart", 1.0, 1e-5, now=1.0)
    assert ledger.budget("heart") == Budget("heart", 1.0, 1e-5)
    ledger.set_budget("heart", 3.0, 1e-6, now=2.0)
    assert ledger.budget("heart") == Budget("heart", 3.0, 1e-6)
    ledger.set_budget("heart", 0.5, 1e-6, now=3.0)
    assert ledger.budget("heart") == Budget("heart", 0.5, 1e-6)
    assert ledger.budget("other") is None
    assert ledger.spent("heart") == 0.0
    assert ledger.studies("heart") == []


@pytest.mark.parametrize(
    ("dataset", "epsilon", "delta"),
    [
        ("heart", 0.0, 1e-5),
        ("heart", -1.0, 1e-5),
        ("heart", math.nan, 1e-5),
        ("heart", math.inf, 1e-5),
        ("heart", 1.0, 0.0),
        ("heart", 1.0, 1.0),
        ("heart", 1.0, -1e-5),
        ("heart", 1.0, math.nan),
        ("", 1.0, 1e-5),
    ],
)
def test_invalid_budgets_are_refused(
    ledger: PrivacyLedger, dataset: str, epsilon: float, delta: float
) -> None:
    ledger.set_budget("heart", 2.0, 1e-5, now=0.0)
    with pytest.raises(ConfigError):
        ledger.set_budget(dataset, epsilon, delta, now=1.0)
    assert ledger.budget("heart") == Budget("heart", 2.0, 1e-5)


# -- spending -------------------------------------------------------------------------------------


def test_spend_until_exhausted_then_refused_and_nothing_booked(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 1.0, DELTA, now=0.0)
    per_run = 20
    runs = 0
    with pytest.raises(PolicyError) as refused:
        while True:
            booked = spend(
                ledger, "s1", per_run, fake_epsilon(per_run * (runs + 1)), now=float(runs)
            )
            runs += 1
            assert booked.steps == per_run * runs
    # 0.05 * sqrt(20 k) <= 1  <=>  k <= 20: the 21st run is the first over budget
    assert runs == 20
    assert refused.value.code == "privacy_budget_exhausted"
    message = str(refused.value)
    assert "'heart'" in message and "1" in message and "exhausted" in message
    assert f"{fake_epsilon(420):.6g}" in message  # the epsilon the refused round would reach
    after = ledger.study("heart", "s1")
    assert after is not None
    assert (after.steps, after.epsilon) == (400, fake_epsilon(400))
    assert after.updated_unix == 19.0
    assert ledger.spent("heart") == pytest.approx(1.0)
    with pytest.raises(PolicyError, match="exhausted"):
        ledger.check("heart", "s1", fake_epsilon(420), DELTA)


def test_spending_exactly_the_budget_is_allowed(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 1.0, DELTA, now=0.0)
    assert ledger.check("heart", "a", 0.5, DELTA) == 0.5
    spend(ledger, "a", 10, 0.5)
    spend(ledger, "b", 10, 0.5)
    assert ledger.spent("heart") == 1.0
    with pytest.raises(PolicyError):
        spend(ledger, "c", 10, 1e-12)


def test_refusal_persists_after_reopening_the_ledger(path: Path) -> None:
    first = PrivacyLedger(path)
    first.set_budget("heart", 1.0, DELTA, now=0.0)
    booked = spend(first, "s1", 100, 0.9, now=5.0)
    first.close()

    reopened = PrivacyLedger(path)
    try:
        assert reopened.budget("heart") == Budget("heart", 1.0, DELTA)
        assert reopened.study("heart", "s1") == booked
        assert reopened.studies("heart") == [booked]
        assert reopened.spent("heart") == 0.9
        with pytest.raises(PolicyError) as refused:
            spend(reopened, "s2", 10, 0.2)
        assert refused.value.code == "privacy_budget_exhausted"
        assert reopened.study("heart", "s2") is None
    finally:
        reopened.close()


def test_two_studies_compose_additively(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 1.0, DELTA, now=0.0)
    ledger.set_budget("lung", 1.0, DELTA, now=0.0)
    a = spend(ledger, "a", 50, 0.3, now=1.0)
    b = spend(ledger, "b", 70, 0.45, now=2.0)
    spend(ledger, "a", 50, 0.5, dataset="lung")  # another dataset's budget is separate
    assert ledger.studies("heart") == [a, b]
    assert ledger.spent("heart") == pytest.approx(np.sum([0.3, 0.45]))
    assert ledger.check("heart", "a", 0.55, DELTA) == pytest.approx(1.0 - 0.55 - 0.45)
    # study b alone would fit (0.6 < 1), but with a's 0.3 the dataset would be at 0.9 + 0.3
    assert ledger.check("heart", "b", 0.7, DELTA) == pytest.approx(0.0)
    with pytest.raises(PolicyError) as refused:
        spend(ledger, "b", 10, 0.75)
    assert refused.value.code == "privacy_budget_exhausted"
    assert ledger.study("heart", "b") == b


def test_retries_of_a_round_add_their_steps_again(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 10.0, DELTA, now=0.0)
    for attempt in range(3):  # round 1 run three times: every run touched the data
        spend(ledger, "s1", 25, fake_epsilon, now=float(attempt))
    booked = ledger.study("heart", "s1")
    assert booked is not None
    assert booked.steps == 75
    assert booked.epsilon == pytest.approx(0.05 * np.sqrt(75))
    spend(ledger, "s1", 25, fake_epsilon(100))
    assert ledger.study("heart", "s1") == StudySpend(
        "heart", "s1", 1.1, 0.01, DELTA, "rdp", 100, 0.5, 0.0
    )


@pytest.mark.parametrize(
    "change",
    [
        {"noise_multiplier": 1.2},
        {"sample_rate": 0.02},
        {"delta": 1e-6},
        {"accountant": "prv"},
    ],
)
def test_a_study_cannot_change_its_mechanism(
    ledger: PrivacyLedger, change: dict[str, float | str]
) -> None:
    ledger.set_budget("heart", 5.0, DELTA, now=0.0)
    before = spend(ledger, "s1", 10, 0.1)
    with pytest.raises(ConfigError, match="mechanism"):
        spend(ledger, "s1", 10, 0.2, **change)
    assert ledger.study("heart", "s1") == before
    spend(ledger, "s2", 10, 0.2, **change)  # a new study may use it


def test_a_study_epsilon_cannot_shrink(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 5.0, DELTA, now=0.0)
    spend(ledger, "s1", 10, 0.4)
    with pytest.raises(ConfigError, match="shrink"):
        spend(ledger, "s1", 10, 0.3)
    with pytest.raises(ConfigError, match="shrink"):
        ledger.check("heart", "s1", 0.3, DELTA)


@pytest.mark.parametrize(
    ("steps", "epsilon", "mech"),
    [
        (0, 0.1, {}),
        (-5, 0.1, {}),
        (10, math.nan, {}),
        (10, -0.1, {}),
        (10, 0.1, {"noise_multiplier": 0.0}),
        (10, 0.1, {"noise_multiplier": math.inf}),
        (10, 0.1, {"sample_rate": 0.0}),
        (10, 0.1, {"sample_rate": 1.5}),
        (10, 0.1, {"delta": 0.0}),
        (10, 0.1, {"accountant": ""}),
    ],
)
def test_invalid_spends_are_refused(
    ledger: PrivacyLedger, steps: int, epsilon: float, mech: dict[str, float | str]
) -> None:
    ledger.set_budget("heart", 5.0, DELTA, now=0.0)
    with pytest.raises(ConfigError):
        spend(ledger, "s1", steps, epsilon, **mech)
    assert ledger.studies("heart") == []


def test_infinite_epsilon_is_refused_as_exhausted(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 5.0, DELTA, now=0.0)
    with pytest.raises(PolicyError) as refused:
        spend(ledger, "s1", 10, math.inf)
    assert refused.value.code == "privacy_budget_exhausted"


def test_dp_training_without_a_budget_is_refused(ledger: PrivacyLedger) -> None:
    ledger.set_budget("lung", 5.0, DELTA, now=0.0)
    for call in (
        lambda: ledger.check("heart", "s1", 0.1, DELTA),
        lambda: spend(ledger, "s1", 10, 0.1),
    ):
        with pytest.raises(PolicyError) as refused:
            call()
        assert refused.value.code == "privacy_budget_missing"
        assert "'heart'" in str(refused.value)
    assert ledger.studies("heart") == []


def test_a_delta_above_the_budget_delta_is_refused(ledger: PrivacyLedger) -> None:
    ledger.set_budget("heart", 5.0, 1e-6, now=0.0)
    for call in (
        lambda: ledger.check("heart", "s1", 0.1, 1.5e-6),
        lambda: spend(ledger, "s1", 10, 0.1, delta=1.5e-6),
    ):
        with pytest.raises(PolicyError) as refused:
            call()
        assert refused.value.code == "privacy_delta_too_large"
    assert ledger.studies("heart") == []
    spend(ledger, "s1", 10, 0.1, delta=1e-6)  # at the limit is fine


def test_lowering_the_budget_below_spent_refuses_every_further_spend(
    ledger: PrivacyLedger,
) -> None:
    ledger.set_budget("heart", 2.0, DELTA, now=0.0)
    spend(ledger, "a", 10, 0.8)
    ledger.set_budget("heart", 0.5, DELTA, now=1.0)
    assert ledger.spent("heart") == 0.8  # nothing booked is forgotten
    for study, epsilon in (("a", 0.8), ("a", 0.81), ("b", 1e-9)):
        with pytest.raises(PolicyError) as refused:
            spend(ledger, study, 1, epsilon)
        assert refused.value.code == "privacy_budget_exhausted"
    ledger.set_budget("heart", 1.0, DELTA, now=2.0)
    assert spend(ledger, "b", 1, 0.1).epsilon == 0.1


# -- concurrency ----------------------------------------------------------------------------------


def _race(calls: list[Callable[[], object]]) -> list[BaseException | None]:
    barrier = threading.Barrier(len(calls))
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            calls[i]()
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    return outcomes


@pytest.mark.parametrize("shared", [True, False], ids=["one-ledger", "two-ledgers"])
@pytest.mark.parametrize("repeat", range(5))
def test_concurrent_spends_near_the_limit_exactly_one_passes(
    path: Path, shared: bool, repeat: int
) -> None:
    ledgers = [PrivacyLedger(path)]
    ledgers.append(ledgers[0] if shared else PrivacyLedger(path))
    try:
        ledgers[0].set_budget("heart", 1.0, DELTA, now=0.0)
        spend(ledgers[0], "a", 10, 0.3)
        outcomes = _race([lambda: spend(ledgers[0], "b", 10, 0.5),
                          lambda: spend(ledgers[1], "c", 10, 0.5)])  # fmt: skip
        refused = [o for o in outcomes if o is not None]
        assert len(refused) == 1
        assert isinstance(refused[0], PolicyError)
        assert refused[0].code == "privacy_budget_exhausted"
        assert ledgers[1].spent("heart") == pytest.approx(0.8)
        assert len(ledgers[1].studies("heart")) == 2
    finally:
        for ledger in {id(x): x for x in ledgers}.values():
            ledger.close()


def test_concurrent_runs_of_one_study_book_the_epsilon_of_all_their_steps(path: Path) -> None:
    first, second = PrivacyLedger(path), PrivacyLedger(path)
    try:
        first.set_budget("heart", 10.0, DELTA, now=0.0)
        outcomes = _race([lambda: spend(first, "s1", 30, fake_epsilon),
                          lambda: spend(second, "s1", 30, fake_epsilon)])  # fmt: skip
        assert outcomes == [None, None]
        booked = first.study("heart", "s1")
        assert booked is not None
        assert booked.steps == 60
        assert booked.epsilon == pytest.approx(0.05 * np.sqrt(60))
    finally:
        first.close()
        second.close()


# -- property -------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    budget=st.floats(0.1, 5.0),
    runs=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0.0, 1.5)), max_size=12),
)
def test_spent_never_exceeds_the_budget_and_is_the_sum_of_studies(
    budget: float, runs: list[tuple[str, float]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger(Path(tmp) / "privacy.sqlite")
        try:
            ledger.set_budget("heart", budget, DELTA, now=0.0)
            reference: dict[str, float] = {}
            for study, increment in runs:
                target = reference.get(study, 0.0) + increment
                others = sum(v for k, v in reference.items() if k != study)
                try:
                    spend(ledger, study, 1, target)
                except PolicyError:
                    assert others + target > budget * (1 - 1e-12)
                else:
                    assert others + target <= budget * (1 + 1e-12)
                    reference[study] = target
            spent = ledger.spent("heart")
            assert spent <= budget
            assert spent == pytest.approx(np.sum(list(reference.values())), abs=1e-12)
            assert {s.study_id: s.epsilon for s in ledger.studies("heart")} == reference
        finally:
            ledger.close()
