"""grpcio leaks every unary call whose request fails to deserialize: a bare reproduction.

No medfed, no TLS: one insecure grpcio server on loopback, one unary method, and a client sending
``--requests`` 20-byte requests its deserializer rejects. Three server variants, side by side:

* ``deserializer raises``: the method declares a request deserializer that fails (what a protobuf
  ``FromString`` does with junk). RSS grows ~20 KB per request and never comes back, and gRPC
  logs a traceback for each ("Exception deserializing message!").
* ``same, double abort suppressed``: as above, with grpc's private ``_server._abort`` patched to
  do nothing on a call that already has its status: the growth disappears, which locates it.
* ``raw bytes``: the method takes raw bytes and the handler parses them itself, answering
  INVALID_ARGUMENT (what medfed does: :mod:`medfed.transport.guard`). No growth.

The mechanism (grpcio 1.85.3, ``grpc/_server.py``): the receive-message callback fails to
deserialize and calls ``_abort(INTERNAL, "Exception deserializing request!")``, which sends the
status and marks the call ``statused``. The pool thread waiting in ``_unary_request`` then wakes
with no request and the client half-closed, and calls ``_abort`` a second time
(``UNIMPLEMENTED``, '"..." requires exactly one request message'); that second batch on a call
whose status is already sent never completes, so its tag — the call's ``_RPCState``, the two
operations, the closures, and through them the core call and its arena — stays referenced for
good. ``--count-aborts`` prints the aborts per request to show it.

    python bench/grpc_junk_leak.py [--requests 3000] [--count-aborts]
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import sys
from concurrent import futures
from typing import Any

import grpc
from grpc import _server  # private: patched only to locate the leak

METHOD = "/leak.Junk/Call"


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def _fail(raw: bytes) -> Any:
    raise ValueError("not a message")


def _refuse(raw: Any, context: grpc.ServicerContext) -> bytes:
    if raw is not None and not raw.startswith(b"ok"):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
    return b"ok"


def serve(deserializer: Any) -> tuple[grpc.Server, int]:
    handler = grpc.method_handlers_generic_handler(
        "leak.Junk",
        {"Call": grpc.unary_unary_rpc_method_handler(_refuse, request_deserializer=deserializer)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def measure(deserializer: Any, requests: int) -> tuple[float, str]:
    """RSS growth (MiB) over ``requests`` junk calls after a warm-up, and the status seen."""
    server, port = serve(deserializer)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(METHOD)
    code = ""

    def send(count: int) -> None:
        nonlocal code
        for _ in range(count):
            try:
                call(b"\xff" * 20, timeout=10)
            except grpc.RpcError as exc:
                code = exc.code().name

    send(200)  # warm-up: thread pool, channel, first allocations
    gc.collect()
    before = rss_mib()
    send(requests)
    gc.collect()
    growth = rss_mib() - before
    channel.close()
    server.stop(None).wait()
    return growth, code


def count_aborts() -> collections.Counter[tuple[str, bool]]:
    """How often grpc aborts the 200 warm-up junk calls, by status and whether each call had
    its status already."""
    seen: collections.Counter[tuple[str, bool]] = collections.Counter()
    original = _server._abort

    def spy(state: Any, call: Any, code: Any, details: bytes) -> None:
        seen[(code.name, bool(state.statused))] += 1
        original(state, call, code, details)

    _server._abort = spy
    try:
        measure(_fail, 0)
    finally:
        _server._abort = original
    return seen


def suppressed_double_abort(requests: int) -> float:
    original = _server._abort

    def once(state: Any, call: Any, code: Any, details: bytes) -> None:
        if not state.statused:
            original(state, call, code, details)

    _server._abort = once
    try:
        return measure(_fail, requests)[0]
    finally:
        _server._abort = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--count-aborts", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # grpc logs one traceback per junk request
    n = args.requests
    if args.count_aborts:
        for (code, statused), count in sorted(count_aborts().items()):
            print(f"_abort({code}) on a call {'already' if statused else 'not yet'} statused: "
                  f"{count} times for 200 junk requests")  # fmt: skip
    print(f"grpcio {grpc.__version__}, Python {sys.version.split()[0]}, {n} junk requests each")
    print("| server | RSS growth MiB | KiB per request | client saw |")
    print("|---|---|---|---|")
    for label, growth, code in (
        ("deserializer raises", *measure(_fail, n)),
        ("same, double abort suppressed", suppressed_double_abort(n), "INTERNAL"),
        ("raw bytes, handler parses", *measure(None, n)),
    ):
        print(f"| {label} | {growth:.1f} | {growth * 1024 / n:.1f} | {code} |")


if __name__ == "__main__":
    main()
