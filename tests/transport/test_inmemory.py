from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from medfed.errors import AuthError, TransportError
from medfed.transport.errors import translate
from medfed.transport.inmemory import InMemoryChannel, InMemoryRpcError

PEM = b"-----BEGIN CERTIFICATE-----\nnot parsed here\n-----END CERTIFICATE-----\n"
TEXT = {"request_deserializer": bytes.decode, "response_serializer": str.encode}
CALLER = {"request_serializer": str.encode, "response_deserializer": bytes.decode}


class Toy:
    """A servicer with one method per behaviour under test; records what its contexts saw."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.saw_inactive = threading.Event()

    def upper(self, request: str, context: grpc.ServicerContext) -> str:
        return request.upper()

    def whoami(self, request: str, context: grpc.ServicerContext) -> str:
        auth = context.auth_context()
        metadata = dict(context.invocation_metadata())
        return f"{auth['x509_pem_cert'][0].decode()}|{context.peer()}|{metadata.get('k', '')}"

    def fail(self, request: str, context: grpc.ServicerContext) -> str:
        if request == "abort":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")
        if request == "set_code":
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details("no such thing")
            return ""
        raise RuntimeError(f"boom on {request}")

    def count(self, request: str, context: grpc.ServicerContext) -> Iterator[str]:
        n, _, abort_at = request.partition("/")
        context.add_callback(lambda: self.ended.append(request))
        for i in range(int(n)):
            if abort_at and i == int(abort_at):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, f"revoked at {i}")
            yield str(i)

    def total(self, requests: Iterator[str], context: grpc.ServicerContext) -> str:
        return str(sum(int(r) for r in requests))

    def echo(self, requests: Iterator[str], context: grpc.ServicerContext) -> Iterator[str]:
        for r in requests:
            yield r * 2

    def wait(self, request: str, context: grpc.ServicerContext) -> str:
        deadline = time.monotonic() + 10
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.saw_inactive.set()
        return "gave up"

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        unary, out, into, both = (
            grpc.unary_unary_rpc_method_handler,
            grpc.unary_stream_rpc_method_handler,
            grpc.stream_unary_rpc_method_handler,
            grpc.stream_stream_rpc_method_handler,
        )
        return grpc.method_handlers_generic_handler(
            "toy.Toy",
            {
                "Upper": unary(self.upper, **TEXT),
                "Whoami": unary(self.whoami, **TEXT),
                "Fail": unary(self.fail, **TEXT),
                "Count": out(self.count, **TEXT),
                "Total": into(self.total, **TEXT),
                "Echo": both(self.echo, **TEXT),
                "Wait": unary(self.wait, **TEXT),
                "Raw": unary(lambda request, context: request[::-1]),
            },
        )


@pytest.fixture
def toy() -> Toy:
    return Toy()


@pytest.fixture
def channel(toy: Toy) -> InMemoryChannel:
    return InMemoryChannel([toy.handler()], PEM)


def test_messages_cross_as_bytes_through_both_sides_serializers(channel: InMemoryChannel) -> None:
    assert channel.unary_unary("/toy.Toy/Upper", **CALLER)("abc") == "ABC"
    assert channel.unary_unary("/toy.Toy/Raw")(b"abc") == b"cba"
    with pytest.raises(InMemoryRpcError, match="serializing request") as info:
        channel.unary_unary("/toy.Toy/Raw")("not bytes")
    assert info.value.code() == grpc.StatusCode.INTERNAL


def test_the_handler_sees_the_peer_certificate_and_metadata(channel: InMemoryChannel) -> None:
    whoami = channel.unary_unary("/toy.Toy/Whoami", **CALLER)

    assert whoami("", metadata=[("k", "v")]) == f"{PEM.decode()}|in-memory|v"


@pytest.mark.parametrize(
    ("request_", "code", "details", "mapped"),
    [
        ("abort", grpc.StatusCode.PERMISSION_DENIED, "not you", AuthError),
        ("set_code", grpc.StatusCode.NOT_FOUND, "no such thing", TransportError),
        ("x", grpc.StatusCode.UNKNOWN, "boom on x", TransportError),
    ],
)
def test_handler_failures_arrive_as_status_codes(
    channel: InMemoryChannel,
    request_: str,
    code: grpc.StatusCode,
    details: str,
    mapped: type[TransportError],
) -> None:
    with pytest.raises(InMemoryRpcError) as info:
        channel.unary_unary("/toy.Toy/Fail", **CALLER)(request_)

    assert info.value.code() == code
    assert details in info.value.details()
    assert type(translate(info.value, "fail")) is mapped


def test_a_response_stream_fails_while_it_is_iterated(toy: Toy, channel: InMemoryChannel) -> None:
    stream = channel.unary_stream("/toy.Toy/Count", **CALLER)("5/2")  # aborts before item 2
    received = []

    with pytest.raises(InMemoryRpcError) as info:
        received.extend(iter(stream))

    assert received == ["0", "1"]
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert toy.ended == ["5/2"]


def test_streams_in_both_directions(toy: Toy, channel: InMemoryChannel) -> None:
    numbers = [str(i) for i in range(10)]

    assert list(channel.unary_stream("/toy.Toy/Count", **CALLER)("3")) == ["0", "1", "2"]
    assert channel.stream_unary("/toy.Toy/Total", **CALLER)(iter(numbers)) == "45"
    assert list(channel.stream_stream("/toy.Toy/Echo", **CALLER)(iter("ab"))) == ["aa", "bb"]
    assert toy.ended == ["3"]


def test_a_cancelled_stream_stops_and_says_so(channel: InMemoryChannel) -> None:
    stream = channel.unary_stream("/toy.Toy/Count", **CALLER)("100")

    assert next(stream) == "0"
    stream.cancel()
    with pytest.raises(InMemoryRpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.CANCELLED


def test_a_deadline_ends_a_waiting_call(toy: Toy, channel: InMemoryChannel) -> None:
    with pytest.raises(InMemoryRpcError) as info:
        channel.unary_unary("/toy.Toy/Wait", **CALLER)("", timeout=0.05)

    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert toy.saw_inactive.is_set()


def test_closing_the_channel_cancels_a_call_in_flight(toy: Toy, channel: InMemoryChannel) -> None:
    errors: list[InMemoryRpcError] = []

    def call() -> None:
        try:
            channel.unary_unary("/toy.Toy/Wait", **CALLER)("")
        except InMemoryRpcError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.05)
    channel.close()
    thread.join(timeout=5)

    assert toy.saw_inactive.is_set()
    assert [(e.code(), e.details()) for e in errors] == [
        (grpc.StatusCode.CANCELLED, "Channel closed!")
    ]


def test_unknown_methods_and_closed_channels_fail_as_in_grpc(channel: InMemoryChannel) -> None:
    with pytest.raises(InMemoryRpcError) as info:
        channel.unary_unary("/toy.Toy/Nope")(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(InMemoryRpcError) as info:
        channel.unary_stream("/toy.Toy/Upper")(b"")  # served as unary-unary
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

    with channel:
        pass
    with pytest.raises(ValueError, match=r"^Cannot invoke RPC on closed channel!$"):
        channel.unary_unary("/toy.Toy/Upper", **CALLER)("abc")
