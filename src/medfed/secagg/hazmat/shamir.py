"""Shamir secret sharing of 16-byte secrets, over GF(2^128), by PyCryptodome.

We wrap ``Crypto.Protocol.SecretSharing.Shamir`` (maintained, constant-size shares) rather than
write field arithmetic by hand. DANGER: ``combine`` with fewer than ``threshold`` shares returns a
wrong secret *silently* (any t-1 shares are consistent with every secret); callers must count
shares first, which :func:`combine` does for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from Crypto.Protocol.SecretSharing import Shamir

from medfed.errors import SecAggError

SECRET_BYTES = 16
Share = tuple[int, bytes]
"""(index >= 1, 16 bytes): the polynomial evaluated at ``index``."""


def split(secret: bytes, threshold: int, holders: int) -> list[Share]:
    """``holders`` shares of ``secret``, any ``threshold`` of which recover it."""
    if len(secret) != SECRET_BYTES:
        raise SecAggError(f"a Shamir secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= holders:
        raise SecAggError(f"threshold {threshold} must be between 1 and {holders} holders")
    if threshold == 1:  # PyCryptodome wants a polynomial of degree >= 1: the secret itself
        return [(i, secret) for i in range(1, holders + 1)]
    return [(int(i), bytes(s)) for i, s in Shamir.split(threshold, holders, secret)]


def combine(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret behind ``threshold`` (or more) distinct shares."""
    distinct = dict(shares)
    if len(distinct) < threshold:
        raise SecAggError(
            f"{len(distinct)} shares cannot recover a secret of threshold {threshold}"
        )
    if any(len(s) != SECRET_BYTES or i < 1 for i, s in distinct.items()):
        raise SecAggError("a Shamir share is malformed")
    picked = sorted(distinct.items())[:threshold]
    if threshold == 1:
        return picked[0][1]
    return bytes(Shamir.combine(picked))
