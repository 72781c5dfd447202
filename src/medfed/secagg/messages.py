"""The messages of one secure-aggregation round, as the protocol sees them (frozen dataclasses).

Stage 1, advertise: each node sends two X25519 public keys (one to encrypt shares, one for
pairwise masks), signed with its certificate key. Stage 2, share: each node sends, per neighbour,
its Shamir shares of its self-mask seed and mask-key seed, encrypted for that neighbour. Stage 3,
masked input: each node sends its encoded update plus masks. Stage 4, unmask: each survivor
reveals, per neighbour, the self-mask share (if that neighbour's input arrived) or the mask-key
share (if it dropped) -- never both.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.errors import SecAggError
from medfed.secagg.hazmat.shamir import SHARE_BYTES

ADVERTISE_PURPOSE = b"medfed/secagg/advertise/v1"
EVALUATE_PURPOSE = "evaluate"
"""A round's :attr:`RoundParams.purpose` when it sums an evaluation's score histograms."""
STATS_PURPOSE = "stats"
"""The purpose of a round that sums statistics vectors (analytics.secure_table)."""


@dataclass(frozen=True)
class RoundParams:
    """Public parameters every participant of one round agrees on (sent by the coordinator)."""

    study_id: str
    round: int
    nodes: tuple[str, ...]
    threshold: int
    degree: int
    graph_seed: bytes
    clip: float
    dimension: int
    purpose: str = ""
    """What the sum is for: "" a training update, "evaluate" an evaluation's score histogram.
    Both run for the same study and round number, so the purpose goes into :attr:`context`: a
    key, share or signature of one can never be replayed into the other."""

    def __post_init__(self) -> None:
        if len(self.nodes) < 2:
            raise SecAggError("secure aggregation needs at least 2 nodes")
        if not 2 <= self.threshold <= len(self.nodes):
            raise SecAggError(
                f"threshold {self.threshold} must be between 2 and {len(self.nodes)} nodes"
            )
        if self.dimension < 0:
            raise SecAggError("a negative vector length")

    @property
    def context(self) -> bytes:
        """Binds every derived key and signature to this study, round and purpose."""
        fields = [self.study_id.encode(), struct.pack(">Q", self.round)]
        if self.purpose:  # training keeps the context it always had
            fields.append(self.purpose.encode())
        return _fields(*fields)


@dataclass(frozen=True)
class Advertisement:
    node: str
    cipher_public: bytes
    mask_public: bytes
    signature: bytes
    certificate_pem: bytes

    def signed_bytes(self, params: RoundParams) -> bytes:
        return _fields(
            ADVERTISE_PURPOSE,
            params.context,
            self.node.encode(),
            self.cipher_public,
            self.mask_public,
        )


@dataclass(frozen=True)
class Reveal:
    """A survivor's stage-4 answer: shares it holds, per owner, of one secret each."""

    node: str
    self_mask_shares: Mapping[str, tuple[int, bytes]]
    key_seed_shares: Mapping[str, tuple[int, bytes]]


@dataclass(frozen=True)
class ShareSet:
    """What a node decrypted from one neighbour: its index and the two secret shares."""

    owner: str
    index: int
    self_mask: bytes
    key_seed: bytes

    def encode(self, holder: str) -> bytes:
        return _fields(
            self.owner.encode(), holder.encode(), struct.pack(">I", self.index),
            self.self_mask, self.key_seed,
        )  # fmt: skip

    @staticmethod
    def encoded_size(owner: str, holder: str) -> int:
        """The exact length of :meth:`encode`: the coordinator refuses sealed shares of any
        other size before it routes them."""
        return 5 * 4 + len(owner.encode()) + len(holder.encode()) + 4 + 2 * SHARE_BYTES

    @staticmethod
    def decode(data: bytes, owner: str, holder: str) -> ShareSet:
        """Refuse anything but one index and two full-size shares: a share that opened came
        from ``owner`` itself, so a malformed one is its owner's doing, named as such."""
        parts = _unfields(data)
        if len(parts) != 5 or parts[0] != owner.encode() or parts[1] != holder.encode():
            raise SecAggError(f"the share from {owner!r} is not addressed to {holder!r}")
        index = int.from_bytes(parts[2], "big") if len(parts[2]) == 4 else 0
        if index < 1 or len(parts[3]) != SHARE_BYTES or len(parts[4]) != SHARE_BYTES:
            raise SecAggError(f"the share from {owner!r} is malformed")
        return ShareSet(owner, index, parts[3], parts[4])


MaskedInput = npt.NDArray[np.uint32]


def _fields(*parts: bytes) -> bytes:
    """Length-prefixed concatenation: no two different field lists give the same bytes."""
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _unfields(data: bytes) -> list[bytes]:
    parts, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise SecAggError("a secure-aggregation message is truncated")
        (size,) = struct.unpack_from(">I", data, at)
        at += 4
        if at + size > len(data):
            raise SecAggError("a secure-aggregation message is truncated")
        parts.append(data[at : at + size])
        at += size
    return parts
