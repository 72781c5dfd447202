"""Signed updates: a node signs what it submits, bound to study, round and task.

The node signs ``study, round, task, header_sha256`` with its certificate key, where
``header_sha256`` is SHA-256 of the reply's header (deterministic protobuf encoding, signature
field empty), and the header carries ``update_sha256``, the SHA-256 of the uploaded tensors (under
secure aggregation: of the masked input, which is all that leaves the node). The coordinator
recomputes both from what arrived, verifies the signature against the certificate the node
connected with, and records the proof in the round's ledger entry, so anyone holding the CA
certificate can later check who contributed which update. A replay into another round, study or
task, a payload changed by one bit, or a signature by another node's key does not verify.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509

from medfed.errors import LedgerError
from medfed.ledger.entry import canonical
from medfed.ledger.keys import TrustedCertificate, trust

UPDATE_PURPOSE = b"medfed/update/v1\n"
MAX_CACHED_CERTIFICATES = 4096


class Header(Protocol):
    """What signing needs of ``medfed.v1.UpdateHeader`` (structural: ledger/ imports no wire)."""

    task_id: str
    study_id: str
    round: int
    num_examples: int
    update_sha256: str
    signature: bytes

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...

    def ClearField(self, field_name: Any) -> None: ...


def header_sha256(header: Header) -> str:
    """SHA-256 of the header as signed: its deterministic encoding with the signature left out."""
    signature = header.signature
    header.ClearField("signature")
    try:
        return hashlib.sha256(header.SerializeToString(deterministic=True)).hexdigest()
    finally:
        header.signature = signature


def update_signed_bytes(study: str, round_: int, task: str, header_digest: str) -> bytes:
    binding = {"study": study, "round": round_, "task": task, "header_sha256": header_digest}
    return UPDATE_PURPOSE + canonical(binding)


def sign_header(header: Header, sign: Any) -> None:
    """Fill ``header.signature`` (``sign(bytes) -> bytes``, the node's certificate key)."""
    header.ClearField("signature")
    digest = header_sha256(header)
    header.signature = sign(
        update_signed_bytes(header.study_id, header.round, header.task_id, digest)
    )


@dataclass(frozen=True)
class UpdateProof:
    """What the round's ledger entry records of one accepted reply."""

    node: str
    task: str
    examples: int
    update_sha256: str
    header_sha256: str
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "task": self.task,
            "examples": self.examples,
            "update_sha256": self.update_sha256,
            "header_sha256": self.header_sha256,
            "signature": self.signature.hex(),
        }


def check_proof(
    record: Mapping[str, Any], study: str, round_: int, node: TrustedCertificate
) -> None:
    """Check one recorded proof against the node's certificate (offline, from the ledger)."""
    try:
        data = update_signed_bytes(study, round_, str(record["task"]), str(record["header_sha256"]))
        signature = bytes.fromhex(str(record["signature"]))
    except (KeyError, ValueError):
        raise LedgerError(f"the update record of {node.name!r} is malformed") from None
    if not node.verify(signature, data):
        raise LedgerError(
            f"the update of {node.name!r} in study {study!r} round {round_} is not signed by "
            "its certificate key"
        )


class UpdateVerifier:
    """The coordinator's check of a reply's signature against the peer's TLS certificate."""

    def __init__(self, ca: x509.Certificate) -> None:
        self._ca = ca
        self._lock = threading.Lock()
        self._trusted: dict[bytes, TrustedCertificate] = {}

    def verify(
        self, peer_pem: bytes, node: str, header: Header, payload_sha256: str
    ) -> UpdateProof:
        """The proof to record, or LedgerError saying why the reply cannot be attributed."""
        if not header.signature:
            raise LedgerError("the reply is not signed (medfed nodes sign every update)")
        if header.update_sha256 != payload_sha256:
            raise LedgerError(
                "the reply's data does not match the SHA-256 it signed (changed in transit or "
                "a different update)"
            )
        digest = header_sha256(header)
        data = update_signed_bytes(header.study_id, header.round, header.task_id, digest)
        if not self._certificate(peer_pem).verify(bytes(header.signature), data):
            raise LedgerError(
                f"the reply's signature does not verify with {node!r}'s certificate (signed by "
                "another key, or for another study, round or task)"
            )
        return UpdateProof(node, header.task_id, header.num_examples, header.update_sha256,
                           digest, bytes(header.signature))  # fmt: skip

    def trusted(self, pem: bytes) -> TrustedCertificate:
        """The CA-checked certificate ``pem`` (cached)."""
        return self._certificate(pem)

    def _certificate(self, pem: bytes) -> TrustedCertificate:
        with self._lock:
            cached = self._trusted.get(pem)
        if cached is not None:
            return cached
        trusted = trust(pem, self._ca)
        with self._lock:
            if len(self._trusted) >= MAX_CACHED_CERTIFICATES:
                self._trusted.clear()
            self._trusted[pem] = trusted
        return trusted
