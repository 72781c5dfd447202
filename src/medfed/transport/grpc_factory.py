"""Server and channel factories: the only places that choose gRPC options.

Messages are capped well below gRPC's 2 GiB default: models stream as 1 MiB chunks, so no single
message needs more than a few MiB. Per-study caps on a whole update are enforced by the receiver
from the study's model manifest.
"""

from __future__ import annotations

from concurrent import futures

import grpc

from medfed.errors import ConfigError
from medfed.protocol.framing import CHUNK_BYTES
from medfed.transport.tls import TlsFiles, channel_credentials, server_credentials

MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES
"""Largest single gRPC message either side accepts (a chunk plus generous framing)."""

_COMMON_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.optimization_target", "throughput"),
]


MAX_STREAMS_PER_CONNECTION = 32
"""HTTP/2 streams one connection may have open; more wait at the client, not on the server."""


def make_server(
    bind: str, tls: TlsFiles, *, max_workers: int = 128, receive_window_bytes: int = 0
) -> tuple[grpc.Server, int]:
    """A gRPC server bound with mTLS to ``bind`` (``host:port``, port 0 picks one) and its port.

    ``max_workers`` threads serve every call; how many of them node calls may hold is the
    guard's business (:mod:`medfed.transport.limits`). ``receive_window_bytes`` > 0 fixes each
    stream's HTTP/2 receive window instead of letting gRPC grow it by bandwidth probing: less
    data buffered per upload, at some throughput cost.
    """
    options: list[tuple[str, int | str]] = [
        *_COMMON_OPTIONS,
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    ]
    if receive_window_bytes > 0:
        options += [
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", receive_window_bytes),
        ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="medfed-rpc"),
        options=options,
        maximum_concurrent_rpcs=max_workers * 4,
    )
    port = server.add_secure_port(bind, server_credentials(tls))
    return server, port


def make_channel(target: str, tls: TlsFiles, *, server_name: str | None = None) -> grpc.Channel:
    """A mutual-TLS channel to ``target``; ``server_name`` overrides the name checked in the
    coordinator's certificate (its SANs) when dialling by an address it is not named for."""
    options = list(_COMMON_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, channel_credentials(tls), options=options)


def connect(target: str, tls: TlsFiles | None, server_name: str = "") -> grpc.Channel:
    """``make_channel`` for clients whose TLS files are optional in their signature."""
    if tls is None:
        raise ConfigError(f"connecting to {target!r} needs TLS files (there is no insecure mode)")
    return make_channel(target, tls, server_name=server_name or None)
