from __future__ import annotations

import pytest

from medfed.transport.limits import Busy, CallKind, CallLimiter, CallLimits


def test_a_caller_beyond_its_share_of_a_kind_is_refused_and_others_are_not() -> None:
    limiter = CallLimiter(CallLimits(per_identity={CallKind.POLL: 2}))
    held = [limiter.acquire("mallory", CallKind.POLL) for _ in range(2)]

    with pytest.raises(Busy, match="'mallory' already has 2 long-polls open"):
        limiter.acquire("mallory", CallKind.POLL)
    limiter.acquire("cleveland", CallKind.POLL)
    limiter.acquire("mallory", CallKind.UPLOAD)  # another kind: not bounded here

    held[0].release()
    limiter.acquire("mallory", CallKind.POLL)


def test_waiting_calls_of_all_nodes_together_leave_the_admins_their_threads() -> None:
    limiter = CallLimiter(CallLimits(per_identity={}, node_threads=3, admin_threads=1))
    for kind in (CallKind.POLL, CallKind.UPLOAD, CallKind.DOWNLOAD):
        limiter.acquire(f"node-{kind}", kind)

    with pytest.raises(Busy, match="coordinator busy"):
        limiter.acquire("another", CallKind.POLL)
    limiter.acquire("researcher", CallKind.ADMIN)
    limiter.acquire("another", CallKind.SHORT)
    assert limiter.limits.pool_size == 4


def test_a_lease_released_twice_counts_once() -> None:
    limiter = CallLimiter()
    first = limiter.acquire("cleveland", CallKind.UPLOAD)
    limiter.acquire("cleveland", CallKind.UPLOAD)

    first.release()
    first.release()

    assert limiter.open_calls("cleveland", CallKind.UPLOAD) == 1
