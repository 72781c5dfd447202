"""Key agreement (X25519 + HKDF-SHA256 with a purpose string) and share encryption (AES-GCM).

DANGER: every derived key names its purpose *and* its round in the HKDF ``info``, so a mask seed
can never double as an encryption key, nor a key of round r be replayed in round r+1. The masking
key pair is derived from a 16-byte seed so that the seed (not the 32-byte private key) is what
gets Shamir-shared; anyone holding the seed holds the key.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from medfed.errors import SecAggError

PUBLIC_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MASK_INFO = b"medfed/secagg/pairwise-mask/v1"
SHARE_KEY_INFO = b"medfed/secagg/share-encryption/v1"
SELF_MASK_INFO = b"medfed/secagg/self-mask/v1"
KEY_SEED_INFO = b"medfed/secagg/mask-key-seed/v1"


def derive(secret: bytes, purpose: bytes, context: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 of ``secret`` for one ``purpose`` in one ``context`` (study and round)."""
    return HKDF(hashes.SHA256(), length, salt=None, info=purpose + b"|" + context).derive(secret)


def private_key_from_seed(seed: bytes, context: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(derive(seed, KEY_SEED_INFO, context))


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agree(own: X25519PrivateKey, peer_public: bytes, purpose: bytes, context: bytes) -> bytes:
    """The 32-byte key both ends derive from their X25519 exchange, for ``purpose`` only."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
        shared = own.exchange(peer)
    except ValueError:
        raise SecAggError("a peer's X25519 public key is invalid") from None
    return derive(shared, purpose, context)


def check_public(peer_public: bytes) -> None:
    """Raise unless ``peer_public`` is a key a peer can agree with: 32 bytes and not one of the
    low-order points whose shared secret is all zeros (RFC 7748, section 6.1). The coordinator
    checks before forwarding, so that one node's bad key cannot make its neighbours fail."""
    if len(peer_public) != PUBLIC_KEY_BYTES:
        raise SecAggError(f"an X25519 public key is {len(peer_public)} bytes, not 32")
    agree(X25519PrivateKey.generate(), peer_public, b"medfed/secagg/key-check/v1", b"")


def sealed_size(plaintext_bytes: int) -> int:
    """The length of :func:`seal`'s output for a plaintext of ``plaintext_bytes``."""
    return NONCE_BYTES + plaintext_bytes + TAG_BYTES


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Decrypt; every failure is the same opaque error (wrong key, tampered or misaddressed)."""
    if len(sealed) <= NONCE_BYTES:
        raise SecAggError("an encrypted share is truncated")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag:
        raise SecAggError(
            "an encrypted share does not decrypt (tampered or misaddressed)"
        ) from None
