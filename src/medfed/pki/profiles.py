"""Certificate profiles: the key type, extensions and validity each kind of certificate gets.

The profiles follow RFC 5280 and the CA/Browser Forum baseline where it applies to a private PKI:

* the root is ``CA=True, pathlen=0`` (it signs leaves only, never an intermediate) and may only
  sign certificates and CRLs;
* a leaf is ``CA=False`` with ``digitalSignature`` only (ECDHE key exchange signs, never encrypts
  to the key) and an extended key usage per role: the coordinator is a TLS server and also a
  client, nodes and admins are clients only, so a stolen node key cannot impersonate the server;
* the coordinator's subjectAltName always holds ``DNS:localhost`` and ``IP:127.0.0.1`` so a
  loopback deployment works without flags; TLS clients check the host against the SAN, never
  the CN (RFC 6125 section 6.4.4).

Keys are ECDSA P-256 with SHA-256 signatures everywhere (FIPS 186-4), one curve so that every
gRPC/BoringSSL build accepts every certificate.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from medfed.errors import PkiError
from medfed.pki.identity import Role

CURVE_NAME = ec.SECP256R1.name
CLOCK_SKEW = timedelta(minutes=5)
"""not_before is backdated by this much so a peer whose clock runs a little behind accepts a
certificate issued seconds ago."""

COORDINATOR_DEFAULT_SANS: tuple[str, ...] = ("DNS:localhost", "IP:127.0.0.1")

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_MAX_DNS_LENGTH = 253


def utc_now(now: datetime | None) -> datetime:
    """The one place the PKI reads the clock; a given ``now`` must be timezone-aware."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise PkiError(f"time {now.isoformat()} has no timezone; pass an aware datetime (UTC)")
    return now.astimezone(UTC)


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def check_public_key(key: object) -> ec.EllipticCurvePublicKey:
    """Accept only P-256 public keys, so every certificate the CA signs matches the profile."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE_NAME:
        raise PkiError(f"key must be ECDSA on {CURVE_NAME} (P-256); got {type(key).__name__}")
    return key


def parse_san(text: str) -> x509.GeneralName:
    """``DNS:host``, ``IP:addr``, or a bare host or address (an address is recognised as such)."""
    kind, sep, value = text.strip().partition(":")
    if sep and kind.upper() in {"DNS", "IP"}:
        return _ip_san(value) if kind.upper() == "IP" else _dns_san(value)
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip()))
    except ValueError:
        return _dns_san(text)


def parse_sans(texts: Iterable[str]) -> list[x509.GeneralName]:
    """Parse and de-duplicate, keeping first-seen order so certificates are reproducible."""
    names: list[x509.GeneralName] = []
    for text in texts:
        name = parse_san(text)
        if name not in names:
            names.append(name)
    return names


def leaf_sans(role: Role, sans: Sequence[str]) -> list[x509.GeneralName]:
    defaults = COORDINATOR_DEFAULT_SANS if role is Role.COORDINATOR else ()
    return parse_sans([*defaults, *sans])


def extended_key_usage(role: Role) -> x509.ExtendedKeyUsage:
    if role is Role.COORDINATOR:
        return x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        )
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])


def ca_extensions(public_key: ec.EllipticCurvePublicKey) -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage(cert_sign=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
    ]


def leaf_extensions(
    role: Role,
    public_key: ec.EllipticCurvePublicKey,
    ca_public_key: ec.EllipticCurvePublicKey,
    sans: Sequence[x509.GeneralName],
) -> list[tuple[x509.ExtensionType, bool]]:
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(cert_sign=False), True),
        (extended_key_usage(role), False),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key), False),
    ]
    if sans:
        extensions.append((x509.SubjectAlternativeName(list(sans)), False))
    return extensions


def validity(
    now: datetime,
    valid_days: int,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[datetime, datetime]:
    """(not_before, not_after): backdated by :data:`CLOCK_SKEW`, unless given explicitly."""
    if valid_days < 1:
        raise PkiError(f"validity must be at least 1 day, got {valid_days}")
    start = utc_now(not_before) if not_before is not None else now - CLOCK_SKEW
    end = utc_now(not_after) if not_after is not None else now + timedelta(days=valid_days)
    if end <= start:
        raise PkiError(f"not_after {end.isoformat()} is not after not_before {start.isoformat()}")
    return start, end


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ip_san(value: str) -> x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise PkiError(f"SAN IP:{value} is not an IPv4 or IPv6 address") from None


def _dns_san(value: str) -> x509.DNSName:
    host = value.strip().lower().rstrip(".")
    labels = host.split(".")
    if len(host) > _MAX_DNS_LENGTH or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise PkiError(
            f"SAN {value!r} is neither an IP address nor a valid DNS name "
            "(letters, digits and '-' in dot-separated labels)"
        )
    return x509.DNSName(host)
