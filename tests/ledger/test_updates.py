from __future__ import annotations

import hashlib

import pytest

from medfed.errors import LedgerError
from medfed.ledger.keys import trust
from medfed.ledger.updates import UpdateVerifier, check_proof
from tests.ledger.conftest import LedgerWorld
from tests.ledger.helpers import signed_header

DATA = b"\x00\x01" * 64
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_a_signed_update_verifies_and_its_proof_checks_offline(world: LedgerWorld) -> None:
    header = signed_header(world, "alpha", "s-1", 2, DATA)
    proof = UpdateVerifier(world.ca).verify(world.nodes["alpha"].pem, "alpha", header, DIGEST)
    assert proof.update_sha256 == DIGEST and proof.examples == 10
    check_proof(proof.to_json(), "s-1", 2, trust(world.nodes["alpha"].pem, world.ca))
    with pytest.raises(LedgerError, match="not signed"):
        check_proof(proof.to_json(), "s-1", 3, trust(world.nodes["alpha"].pem, world.ca))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"round": 3}, "another study, round or task"),  # replayed into the next round
        ({"study_id": "s-2"}, "another study, round or task"),  # replayed into another study
        ({"task_id": "t-other"}, "another study, round or task"),
        ({"num_examples": 11}, "another study, round or task"),  # a header field changed
    ],
)
def test_a_replayed_or_altered_header_is_refused(
    world: LedgerWorld, change: dict[str, object], why: str
) -> None:
    header = signed_header(world, "alpha", "s-1", 2, DATA)
    for field, value in change.items():
        setattr(header, field, value)
    with pytest.raises(LedgerError, match=why):
        UpdateVerifier(world.ca).verify(world.nodes["alpha"].pem, "alpha", header, DIGEST)


def test_an_update_signed_by_another_node_is_refused(world: LedgerWorld) -> None:
    header = signed_header(world, "beta", "s-1", 2, DATA)  # beta's key ...
    with pytest.raises(LedgerError, match="does not verify with 'alpha'"):  # ... sent by alpha
        UpdateVerifier(world.ca).verify(world.nodes["alpha"].pem, "alpha", header, DIGEST)


def test_a_bit_flipped_payload_or_an_unsigned_reply_is_refused(world: LedgerWorld) -> None:
    header = signed_header(world, "alpha", "s-1", 2, DATA)
    flipped = bytes([DATA[0] ^ 1]) + DATA[1:]
    verifier = UpdateVerifier(world.ca)
    with pytest.raises(LedgerError, match="does not match the SHA-256 it signed"):
        verifier.verify(
            world.nodes["alpha"].pem, "alpha", header, hashlib.sha256(flipped).hexdigest()
        )
    header.ClearField("signature")
    with pytest.raises(LedgerError, match="not signed"):
        verifier.verify(world.nodes["alpha"].pem, "alpha", header, DIGEST)
