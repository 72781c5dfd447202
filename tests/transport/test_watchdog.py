from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from medfed.transport.watchdog import (
    StreamCut,
    StreamRules,
    StreamWatchdog,
    WatchedRequests,
    watched_responses,
)

RULES = StreamRules(first_message_s=2.0, idle_s=5.0, min_bytes_per_s=100.0, grace_s=10.0)


class _Context:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _watched(rules: StreamRules = RULES) -> tuple[StreamWatchdog, _Context]:
    watchdog = StreamWatchdog(rules)
    context = _Context()
    watchdog.watch(context, "SubmitUpdate from mallory")
    return watchdog, context


def test_a_stream_whose_first_message_is_late_is_cut() -> None:
    watchdog, context = _watched()
    (stream,) = watchdog._streams
    stream.begin_wait(100.0)

    watchdog.check(101.9)
    assert not context.cancelled
    watchdog.check(102.1)

    assert context.cancelled
    assert stream.cut_reason == "nothing arrived within 2 s of opening the stream"
    assert watchdog.watching() == 0


def test_a_stream_idle_between_messages_is_cut_but_not_while_the_server_makes_it_wait() -> None:
    watchdog, context = _watched()
    (stream,) = watchdog._streams
    stream.begin_wait(0.0)
    stream.end_wait(0.1, 1000)

    watchdog.check(60.0)  # the server held it (a staging buffer): not the peer's time
    assert not context.cancelled
    stream.begin_wait(60.0)
    watchdog.check(65.1)

    assert stream.cut_reason == "stalled: no message for 5 s"


def test_a_trickle_below_the_minimum_rate_is_cut_after_the_grace() -> None:
    watchdog, context = _watched()
    (stream,) = watchdog._streams
    for second in range(12):  # 50 bytes each second, never idle for long
        stream.begin_wait(float(second))
        stream.end_wait(second + 1.0, 50)
        watchdog.check(second + 1.0)

    assert context.cancelled
    assert stream.cut_reason is not None and stream.cut_reason.startswith("too slow")


def test_a_bound_condition_cuts_the_stream_with_its_reason() -> None:
    watchdog, context = _watched()
    (stream,) = watchdog._streams
    closed = False
    stream.stop_when(lambda: "round 3 closed" if closed else None)
    watchdog.check(1.0)
    closed = True

    watchdog.check(1.1)

    assert context.cancelled and stream.cut_reason == "round 3 closed"


class _CancelledRequests(Iterator[bytes]):
    def __next__(self) -> bytes:
        raise grpc.RpcError()


def test_a_cut_request_stream_raises_the_reason_to_its_reader() -> None:
    watchdog, _ = _watched()
    (stream,) = watchdog._streams
    stream.cut("stalled: no message for 5 s")

    with pytest.raises(StreamCut, match="SubmitUpdate from mallory cut: stalled"):
        next(WatchedRequests(stream, _CancelledRequests()))


def test_a_request_stream_cancelled_by_its_sender_says_so() -> None:
    watchdog, _ = _watched()
    (stream,) = watchdog._streams

    with pytest.raises(StreamCut, match="the sender cancelled it"):
        next(WatchedRequests(stream, _CancelledRequests()))


def test_messages_pass_through_counted() -> None:
    watchdog, _ = _watched()
    (stream,) = watchdog._streams

    assert list(WatchedRequests(stream, iter([b"ab", b"cde"]))) == [b"ab", b"cde"]
    assert list(watched_responses(stream, iter([b"f"]))) == [b"f"]
    assert (stream.messages, stream.bytes) == (4, 6)  # the end of the requests counts as one


def test_a_cut_that_surfaces_as_the_end_of_the_stream_still_raises_the_reason() -> None:
    watchdog, _ = _watched()
    (stream,) = watchdog._streams
    requests = WatchedRequests(stream, iter([b"header"]))
    next(requests)
    stream.cut("round 1 closed")

    with pytest.raises(StreamCut, match="round 1 closed"):
        next(requests)
