"""Shamir secret sharing (Shamir 1979) of 16-byte secrets over the prime field GF(2^130 - 5).

Written here rather than taken from PyCryptodome (``Crypto.Protocol.SecretSharing``), which the
issue suggested: PyCryptodome works in GF(2^128) with its field multiplication done bit by bit in
pure Python, about 30 us per multiply -- a 6-of-9 combine costs ~6 ms, and the coordinator recovers
one secret per node per round (0.3 s of a 50-node round went there). With Python's integers the
same field work is microseconds. The mathematics is the textbook one: a random polynomial of
degree t - 1 whose constant term is the secret, coefficients from ``secrets``, evaluated at
x = 1..n; Lagrange interpolation at 0 recovers it. 2^130 - 5 (the Poly1305 prime) exceeds every
16-byte secret, so the sharing is perfect: any t - 1 shares are uniformly distributed whatever the
secret.

DANGER: ``combine`` with fewer than ``threshold`` shares would return a wrong secret *silently*
(t - 1 shares fit every secret); it counts distinct shares first and refuses. A share that was
tampered with yields a wrong secret, not an error; callers that can check the result (the
coordinator compares a rebuilt key with the advertised one) must, and callers holding more than
t shares can check that they agree (``consistent``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from medfed.errors import SecAggError

PRIME = 2**130 - 5
SECRET_BYTES = 16
SHARE_BYTES = 17
Share = tuple[int, bytes]
"""(x >= 1, the polynomial at x as 17 big-endian bytes)."""


def split(secret: bytes, threshold: int, holders: int) -> list[Share]:
    """``holders`` shares of ``secret``, any ``threshold`` of which recover it."""
    if len(secret) != SECRET_BYTES:
        raise SecAggError(f"a Shamir secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= holders:
        raise SecAggError(f"threshold {threshold} must be between 1 and {holders} holders")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in range(1, holders + 1):
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares.append((x, y.to_bytes(SHARE_BYTES, "big")))
    return shares


def _points(shares: Sequence[Share]) -> list[tuple[int, int]]:
    points = sorted(dict(shares).items())
    if any(x < 1 or x >= PRIME or len(y) != SHARE_BYTES for x, y in points):
        raise SecAggError("a Shamir share is malformed")
    ints = [(x, int.from_bytes(y, "big")) for x, y in points]
    if any(y >= PRIME for _, y in ints):
        raise SecAggError("a Shamir share is malformed")
    return ints


def _interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    """The polynomial through ``points`` (Lagrange), evaluated at ``at``."""
    value = 0
    for j, (xj, yj) in enumerate(points):
        numerator = denominator = 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                numerator = numerator * (at - xm) % PRIME
                denominator = denominator * (xj - xm) % PRIME
        value = (value + yj * numerator * pow(denominator, -1, PRIME)) % PRIME
    return value


def combine(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret behind ``threshold`` (or more) distinct shares."""
    if len(dict(shares)) < threshold:
        raise SecAggError(
            f"{len(dict(shares))} shares cannot recover a secret of threshold {threshold}"
        )
    secret = _interpolate(_points(shares)[:threshold], 0)
    if secret >> (8 * SECRET_BYTES):
        raise SecAggError("the Shamir shares are inconsistent (tampered with or mixed up)")
    return secret.to_bytes(SECRET_BYTES, "big")


def consistent(shares: Sequence[Share], threshold: int) -> bool:
    """Whether all the shares lie on one polynomial of degree ``threshold`` - 1. More shares
    than the threshold expose a share that was altered (which ``combine`` alone cannot: any
    ``threshold`` shares fit some polynomial); exactly ``threshold`` always agree."""
    points = _points(shares)
    base = points[:threshold]
    return all(_interpolate(base, x) == y for x, y in points[threshold:])
