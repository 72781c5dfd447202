from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from medfed.coordinator.rounds import Rejected
from medfed.coordinator.staging import (
    FOLD_OVERLAP_BYTES,
    LINE_GRACE_S,
    LINE_RATE,
    LINE_STALL_S,
    StagingPool,
)

MIB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Waiter(threading.Thread):
    """Asks ``pool`` for a buffer in the background and holds it until ``release``."""

    def __init__(self, pool: StagingPool, owner: str, timeout_s: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.pool, self.owner, self.timeout_s = pool, owner, timeout_s
        self.admitted = threading.Event()
        self.release = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with self.pool.buffer(16, self.timeout_s, owner=self.owner):
                self.admitted.set()
                self.release.wait(30)
        except Rejected as exc:
            self.error = exc
            self.admitted.set()


def deliver(chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_fast_upload_keeps_the_line_until_it_is_received(clock: Clock) -> None:
    pool = StagingPool(size=2, clock=clock)
    with pool.buffer(16, 1.0, owner="a") as first:
        waiter = Waiter(pool, "b")
        waiter.start()
        assert not waiter.admitted.wait(0.3)  # a second buffer is free, but it must wait
        assert pool.receiving == 1
        first.received()  # full: its check and fold overlap the next upload
        assert waiter.admitted.wait(5)
        assert waiter.error is None
        assert pool.receiving == 1
        waiter.release.set()
    waiter.join(5)


def test_the_next_upload_takes_only_a_little_while_the_previous_is_folded(clock: Clock) -> None:
    pool = StagingPool(size=2, clock=clock)
    pulled: list[int] = []

    def source() -> Iterator[bytes]:
        for i in range(3 * FOLD_OVERLAP_BYTES // MIB):
            pulled.append(i)
            yield b"x" * MIB

    with ExitStack() as first_held:
        first_held.enter_context(pool.buffer(16, 1.0, owner="a")).received()  # now folding
        with pool.buffer(16, 1.0, owner="b") as second:
            reader = threading.Thread(target=deliver, args=(second.frames(source()),))
            reader.start()
            reader.join(0.5)
            assert reader.is_alive()  # paused: the sender is held back by flow control
            assert len(pulled) == FOLD_OVERLAP_BYTES // MIB
            first_held.close()  # the fold ends, its buffer goes
            reader.join(5)
            assert len(pulled) == 3 * FOLD_OVERLAP_BYTES // MIB


def test_a_stalled_upload_lets_the_next_one_in(clock: Clock) -> None:
    pool = StagingPool(size=2, clock=clock)
    with pool.buffer(16, 1.0, owner="mallory") as stalled:
        deliver(stalled.frames(iter([b"x" * MIB])))
        waiter = Waiter(pool, "b")
        waiter.start()
        assert not waiter.admitted.wait(0.3)
        clock.now = LINE_STALL_S  # nothing since the first chunk
        assert waiter.admitted.wait(5)
        assert waiter.error is None
        assert pool.receiving == 2
        waiter.release.set()
    waiter.join(5)


@pytest.mark.parametrize(("rate", "let_in"), [(LINE_RATE // 4, True), (LINE_RATE * 4, False)])
def test_a_slow_link_does_not_keep_the_line(clock: Clock, rate: int, let_in: bool) -> None:
    pool = StagingPool(size=2, clock=clock)
    with pool.buffer(16, 1.0, owner="a") as upload:
        waiter = Waiter(pool, "b")
        waiter.start()
        step = LINE_GRACE_S / 4
        for _ in range(8):  # twice the grace, delivering at ``rate`` with no stall
            clock.now += step
            deliver(upload.frames(iter([b"x" * int(rate * step)])))
        assert waiter.admitted.wait(1.0) == let_in
        waiter.release.set()
        upload.received()
    waiter.join(5)
    assert waiter.error is None


def test_no_more_than_size_buffers_and_one_per_node(clock: Clock) -> None:
    pool = StagingPool(size=2, clock=clock)
    with ExitStack() as held:
        held.enter_context(pool.buffer(16, 1.0, owner="a")).received()
        held.enter_context(pool.buffer(16, 1.0, owner="b")).received()
        third = Waiter(pool, "c")
        third.start()
        assert not third.admitted.wait(0.3)  # both buffers taken, though none is receiving
    assert third.admitted.wait(5)
    third.release.set()
    third.join(5)

    with pool.buffer(16, 1.0, owner="a") as first:
        first.received()
        same_node = Waiter(pool, "a", timeout_s=0.5)
        same_node.start()
        assert not same_node.admitted.wait(0.3)
        clock.now = 1.0  # its deadline passes while "a" still holds a buffer
        assert same_node.admitted.wait(5)
        assert isinstance(same_node.error, Rejected)
        assert "no staging buffer free" in str(same_node.error)
    same_node.join(5)


def test_each_upload_gets_a_fresh_buffer_of_its_size(clock: Clock) -> None:
    pool = StagingPool(size=1, clock=clock)
    with pool.buffer(10, 1.0) as small:
        assert len(small.view) == 10
        small.view[:] = b"0123456789"
        small.received()
    with pool.buffer(1000, 1.0) as large:
        assert len(large.view) == 1000
        assert not large.view.readonly
    with pool.buffer(10, 1.0) as again:
        assert again.view.obj is not small.view.obj  # the folded buffer was let go
