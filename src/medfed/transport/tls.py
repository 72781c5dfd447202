"""Mutual-TLS credentials from PEM files.

Every medfed connection is mutual TLS; there is no insecure mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medfed.errors import ConfigError

if TYPE_CHECKING:  # configs hold TlsFiles; gRPC loads only where a channel or server is made
    import grpc


@dataclass(frozen=True)
class TlsFiles:
    """One party's certificate, private key and the consortium root it trusts."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for label, path in (("certificate", self.cert), ("private key", self.key), ("CA", self.ca)):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot read TLS {label} {path}: {exc.strerror}") from exc
        return out[0], out[1], out[2]


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    import grpc

    cert, key, ca = tls.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    import grpc

    cert, key, ca = tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
