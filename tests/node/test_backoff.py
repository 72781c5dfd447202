from __future__ import annotations

import random

from medfed.node.agent import Backoff


def test_delays_are_jittered_below_an_exponential_ceiling_capped_at_max() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, rng=random.Random(7))

    delays = [backoff.next_delay() for _ in range(8)]

    ceilings = [min(4.0, 0.5 * 2**i) for i in range(8)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)


def test_reset_starts_over_from_the_initial_ceiling() -> None:
    backoff = Backoff(initial_s=1.0, max_s=30.0, rng=random.Random(1))
    for _ in range(6):
        backoff.next_delay()

    backoff.reset()

    assert backoff.next_delay() <= 1.0


def test_two_nodes_with_different_seeds_do_not_retry_in_lockstep() -> None:
    a = Backoff(rng=random.Random(1))
    b = Backoff(rng=random.Random(2))

    assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]
