from __future__ import annotations

from medfed.transport.tarpit import Tarpit


def test_held_refusals_are_answered_after_the_delay_in_order() -> None:
    now = [0.0]
    tarpit = Tarpit(delay_s=1.0, clock=lambda: now[0])
    answered: list[str] = []
    tarpit._thread = object()  # type: ignore[assignment]  # no thread: the test drives the clock
    assert tarpit.hold(lambda: answered.append("first"))
    now[0] = 0.5
    assert tarpit.hold(lambda: answered.append("second"))

    now[0] = 0.9
    assert tarpit.release_due() == 0
    now[0] = 1.2
    assert tarpit.release_due() == 1
    now[0] = 1.6
    tarpit.release_due()

    assert answered == ["first", "second"]


def test_a_full_tarpit_holds_nothing_so_the_caller_answers_at_once() -> None:
    tarpit = Tarpit(delay_s=60.0, capacity=2)
    tarpit._thread = object()  # type: ignore[assignment]

    held = [tarpit.hold(lambda: None) for _ in range(3)]

    assert held == [True, True, False]
    assert tarpit.held() == 2


def test_stopping_answers_every_held_call_and_holds_no_more() -> None:
    tarpit = Tarpit(delay_s=60.0)
    answered: list[int] = []
    for i in range(3):
        tarpit.hold(lambda i=i: answered.append(i))  # type: ignore[misc]

    tarpit.stop()

    assert sorted(answered) == [0, 1, 2]
    assert not tarpit.hold(lambda: None)
