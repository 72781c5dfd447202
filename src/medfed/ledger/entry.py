"""One ledger entry: canonical bytes, its hash, the chain link, the coordinator's signature.

An entry is ``(seq, prev, kind, study, time_ms, payload)``. Its hash is SHA-256 over a purpose
string and the canonical JSON of those six fields (keys sorted, no whitespace, UTF-8, no NaN), so
any verifier in any language recomputes it from the JSON Lines export alone; ``prev`` is the
previous entry's hash (64 zeros for the first), which makes the log a hash chain: changing,
dropping or reordering one entry changes every later hash. The coordinator signs the hash (ECDSA
P-256 with its certificate key), so the newest entry's ``(seq, hash, signature)`` is a signed
head: one 32-byte value a blockchain can anchor, and two different signed heads for one ``seq``
are a proof that the coordinator showed two histories.

Why by hand: a hash chain of signed JSON records is twenty lines over ``hashlib`` and
``cryptography``; the libraries that offer one (transparency-log servers, ``immudb``) are
services with their own storage, where the ledger must commit in the coordinator's own
transaction (a round is committed if and only if its entry is).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medfed.errors import LedgerError

GENESIS_PREV = "0" * 64
"""``prev`` of the first entry."""
HASH_PURPOSE = b"medfed/ledger/entry/v1\n"
SIGNATURE_PURPOSE = b"medfed/ledger/head/v1\n"
MAX_ENTRY_BYTES = 4 * 1024 * 1024
"""An entry larger than this is refused when read (a round entry of 1,000 sites is ~0.5 MB)."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_KIND = re.compile(r"[a-z][a-z_]*(\.[a-z][a-z_]*)+")


def canonical(value: Any) -> bytes:
    """The one byte encoding of a JSON value that hashes and signatures cover."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"a ledger payload must be plain JSON without NaN: {exc}") from None
    return text.encode("utf-8")


def entry_hash(
    seq: int, prev: str, kind: str, study: str, time_ms: int, payload: Mapping[str, Any]
) -> str:
    body = {"seq": seq, "prev": prev, "kind": kind, "study": study, "time_ms": time_ms,
            "payload": payload}  # fmt: skip
    return hashlib.sha256(HASH_PURPOSE + canonical(body)).hexdigest()


def signed_bytes(seq: int, hash_hex: str) -> bytes:
    """What the coordinator signs for an entry: its height and hash (a head is self-contained)."""
    return SIGNATURE_PURPOSE + f"{seq}:{hash_hex}".encode("ascii")


@dataclass(frozen=True)
class Head:
    """The newest entry a party has seen: height, hash and the coordinator's signature of both."""

    seq: int
    hash: str
    signature: bytes


@dataclass(frozen=True)
class Entry:
    seq: int
    prev: str
    kind: str
    study: str
    time_ms: int
    payload: Mapping[str, Any]
    hash: str
    signature: bytes

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash, self.signature)

    def computed_hash(self) -> str:
        return entry_hash(self.seq, self.prev, self.kind, self.study, self.time_ms, self.payload)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "prev": self.prev,
            "kind": self.kind,
            "study": self.study,
            "time_ms": self.time_ms,
            "payload": self.payload,
            "hash": self.hash,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    def to_line(self) -> bytes:
        """One JSON Lines record of the export (canonical, so byte-identical everywhere)."""
        return canonical(self.to_json())


def make_entry(
    seq: int, prev: str, kind: str, study: str, time_ms: int, payload: Mapping[str, Any],
    sign: Any,
) -> Entry:  # fmt: skip
    """A new entry, hashed and signed by ``sign(bytes) -> bytes``."""
    if not _KIND.fullmatch(kind):
        raise LedgerError(f"ledger entry kind {kind!r} is not of the form area.event")
    digest = entry_hash(seq, prev, kind, study, time_ms, payload)
    return Entry(seq, prev, kind, study, time_ms, dict(payload), digest,
                 bytes(sign(signed_bytes(seq, digest))))  # fmt: skip


def parse_line(line: bytes | str) -> Entry:
    """Read one exported entry, checking every field's type (not yet its hash or signature)."""
    if len(line) > MAX_ENTRY_BYTES:
        raise LedgerError(f"a ledger entry of {len(line)} bytes is over {MAX_ENTRY_BYTES}")
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LedgerError(f"a ledger entry is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise LedgerError("a ledger entry must be a JSON object")
    return from_json(raw)


def from_json(raw: Mapping[str, Any]) -> Entry:
    expected = {"seq", "prev", "kind", "study", "time_ms", "payload", "hash", "signature"}
    if set(raw) != expected:
        raise LedgerError(f"a ledger entry has fields {sorted(raw)}, expected {sorted(expected)}")
    seq, time_ms = raw["seq"], raw["time_ms"]
    if not _is_int(seq) or seq < 0 or not _is_int(time_ms):
        raise LedgerError("a ledger entry's seq and time_ms must be non-negative integers")
    for name in ("prev", "hash"):
        if not isinstance(raw[name], str) or not _HEX64.fullmatch(raw[name]):
            raise LedgerError(f"entry {seq}: {name} is not a lowercase SHA-256 hex digest")
    if not isinstance(raw["kind"], str) or not _KIND.fullmatch(raw["kind"]):
        raise LedgerError(f"entry {seq}: kind {raw['kind']!r} is not of the form area.event")
    if not isinstance(raw["study"], str) or not isinstance(raw["payload"], dict):
        raise LedgerError(f"entry {seq}: study must be a string and payload an object")
    try:
        signature = base64.b64decode(str(raw["signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise LedgerError(f"entry {seq}: signature is not base64") from None
    return Entry(seq, raw["prev"], raw["kind"], raw["study"], time_ms, raw["payload"],
                 raw["hash"], signature)  # fmt: skip


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
