"""Mask expansion: a 32-byte seed stretched into uniform ``uint32`` words with AES-256-CTR.

DANGER: a seed must mask exactly one vector of one round. The seed is derived per round and per
pair (see :mod:`medfed.secagg.hazmat.keys`), so reuse would need a broken caller; the all-zero
counter block is safe only under that rule. NumPy's generators are not cryptographic and must
never expand a mask: a masked update is exactly as secret as this keystream is unpredictable.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medfed.errors import SecAggError

SEED_BYTES = 32
_ZERO_COUNTER = bytes(16)


def expand(seed: bytes, count: int) -> npt.NDArray[np.uint32]:
    """``count`` little-endian ``uint32`` words of AES-256-CTR keystream under ``seed``."""
    if count < 0:
        raise SecAggError(f"cannot expand a mask of {count} words")
    out = bytearray(4 * count + 15)  # update_into wants block-size headroom
    return _keystream_into(seed, count, out)


def add_into(seed: bytes, out: npt.NDArray[np.uint32], subtract: bool = False) -> None:
    """``out`` += (or -=) the keystream of ``seed``, mod 2^32, in place: the keystream is made in
    a per-thread scratch buffer, so masking a vector allocates (and page-faults) nothing new."""
    words = _keystream_into(seed, out.size, _scratch(4 * out.size + 15))
    (np.subtract if subtract else np.add)(out, words, out=out)


def _keystream_into(seed: bytes, count: int, buffer: bytearray) -> npt.NDArray[np.uint32]:
    if len(seed) != SEED_BYTES:
        raise SecAggError(f"a mask seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if count:
        encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_COUNTER)).encryptor()
        encryptor.update_into(_zeros(4 * count), buffer)
    return np.frombuffer(buffer, dtype="<u4", count=count)


_local = threading.local()


def _scratch(size: int) -> bytearray:
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) != size:
        buffer = bytearray(size)
        _local.buffer = buffer
    return buffer


@functools.lru_cache(maxsize=2)
def _zeros(size: int) -> memoryview:
    """The all-zero plaintext, kept for the vector sizes in use (CTR keystream = AES(0...))."""
    return memoryview(bytes(size))
