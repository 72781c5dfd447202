"""Tensors on the wire: dtype + shape + raw little-endian bytes; never pickle.

A model is an ordered mapping ``name -> ndarray``. Its *manifest* lists each tensor's name, dtype
and shape in order; its *data* is the tensors' C-contiguous little-endian bytes concatenated in
that order. A model's identity is the SHA-256 of a domain-separated canonical encoding of both,
so the same weights always get the same hash whatever file or transport carried them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.errors import NonFiniteError, ProtocolError
from medfed.protocol.framing import CHUNK_BYTES
from medfed.protocol.v1 import medfed_pb2 as pb

Weights = dict[str, npt.NDArray[np.generic]]


FINITE_BLOCK = 1 << 16
"""Elements per finiteness check: a 64 KiB mask, cache-resident, reused across blocks."""

MAX_TENSORS = 4096
MAX_RANK = 8
MAX_MODEL_BYTES = 2**63 - 1
"""A model's data must be addressable by NumPy's int64 offsets."""
_HASH_DOMAIN = b"medfed/model/v1\n"

_DTYPES: dict[str, int] = {
    "float16": pb.DTYPE_FLOAT16,
    "float32": pb.DTYPE_FLOAT32,
    "float64": pb.DTYPE_FLOAT64,
    "int8": pb.DTYPE_INT8,
    "int16": pb.DTYPE_INT16,
    "int32": pb.DTYPE_INT32,
    "int64": pb.DTYPE_INT64,
    "uint8": pb.DTYPE_UINT8,
    "bool": pb.DTYPE_BOOL,
    "uint32": pb.DTYPE_UINT32,
}
_DTYPE_NAMES = {code: name for name, code in _DTYPES.items()}
SUPPORTED_DTYPES = tuple(_DTYPES)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        return np.dtype(self.dtype).newbyteorder("<")

    @property
    def size(self) -> int:
        """Element count, exact (``np.prod`` in int64 wraps silently: [2^32, 2^32] gives 0)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.numpy_dtype.itemsize


@dataclass(frozen=True)
class Manifest:
    tensors: tuple[TensorSpec, ...]

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def offsets(self) -> list[tuple[TensorSpec, int]]:
        """Each tensor with its byte offset in the concatenated data."""
        out, offset = [], 0
        for spec in self.tensors:
            out.append((spec, offset))
            offset += spec.nbytes
        return out

    def canonical(self) -> bytes:
        doc = [[t.name, t.dtype, list(t.shape)] for t in self.tensors]
        return json.dumps(doc, separators=(",", ":")).encode()


def manifest_of(weights: Mapping[str, npt.NDArray[np.generic]]) -> Manifest:
    specs = []
    for name, array in weights.items():
        dtype = np.dtype(array.dtype)
        if dtype.name not in _DTYPES:
            raise ProtocolError(f"tensor {name!r}: dtype {dtype} is not supported on the wire")
        specs.append(TensorSpec(name, dtype.name, tuple(int(d) for d in array.shape)))
    return Manifest(tuple(specs))


def tensor_bytes(array: npt.NDArray[np.generic]) -> memoryview:
    """The array's raw little-endian C-order bytes, without a copy where possible."""
    little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
    return memoryview(little.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def iter_data(weights: Mapping[str, npt.NDArray[np.generic]]) -> Iterator[memoryview]:
    for array in weights.values():
        yield tensor_bytes(array)


def hasher(manifest: Manifest) -> hashlib._Hash:
    """A SHA-256 primed with the domain and manifest; feed it the model's data bytes in order."""
    digest = hashlib.sha256(_HASH_DOMAIN)
    digest.update(manifest.canonical())
    digest.update(b"\n")
    return digest


def sha256_of(manifest: Manifest, data: Iterable[bytes | bytearray | memoryview]) -> str:
    digest = hasher(manifest)
    for piece in data:
        digest.update(piece)
    return digest.hexdigest()


def weights_sha256(weights: Mapping[str, npt.NDArray[np.generic]]) -> str:
    return sha256_of(manifest_of(weights), iter_data(weights))


def chunk(views: Iterable[memoryview], size: int = CHUNK_BYTES) -> Iterator[bytes | memoryview]:
    """Re-cut a stream of buffers into ``size``-byte chunks (the last may be shorter).

    A chunk inside one buffer is a zero-copy view of it; only chunks straddling two buffers are
    copied. Views are valid as long as the buffers are: consume them before changing the arrays.
    """
    pending = bytearray()
    for view in views:
        start = 0
        if pending:
            take = min(size - len(pending), len(view))
            pending += view[:take]
            start = take
            if len(pending) < size:
                continue
            yield bytes(pending)
            pending.clear()
        while len(view) - start >= size:
            yield view[start : start + size]
            start += size
        pending += view[start:]
    if pending:
        yield bytes(pending)


def encode_model(
    weights: Mapping[str, npt.NDArray[np.generic]],
    size: int = CHUNK_BYTES,
    *,
    with_hash: bool = True,
) -> tuple[pb.ModelManifest, Iterator[bytes | memoryview]]:
    """The manifest message and the data chunks of ``weights``.

    ``with_hash=False`` leaves the manifest's hash empty: for an update that nobody addresses by
    hash, the TLS record MAC already guarantees integrity and hashing would only cost CPU.
    """
    manifest = manifest_of(weights)
    message = manifest_to_proto(manifest, weights_sha256(weights) if with_hash else "")
    return message, chunk(iter_data(weights), size)


def manifest_to_proto(manifest: Manifest, sha256: str = "") -> pb.ModelManifest:
    return pb.ModelManifest(
        tensors=[
            pb.TensorSpec(name=t.name, dtype=_DTYPES[t.dtype], shape=list(t.shape))  # type: ignore[arg-type]
            for t in manifest.tensors
        ],
        total_bytes=manifest.total_bytes,
        sha256=sha256,
    )


def manifest_from_proto(message: pb.ModelManifest, max_bytes: int | None = None) -> Manifest:
    """Validate and convert a wire manifest, refusing what a sender could use to exhaust memory."""
    if len(message.tensors) > MAX_TENSORS:
        raise ProtocolError(f"manifest lists {len(message.tensors)} tensors (max {MAX_TENSORS})")
    specs, seen = [], set()
    for t in message.tensors:
        if not t.name or t.name in seen:
            raise ProtocolError(f"manifest tensor name {t.name!r} is empty or repeated")
        seen.add(t.name)
        if t.dtype not in _DTYPE_NAMES:
            raise ProtocolError(f"tensor {t.name!r}: unknown dtype code {t.dtype}")
        if len(t.shape) > MAX_RANK or any(d < 0 for d in t.shape):
            raise ProtocolError(f"tensor {t.name!r}: invalid shape {list(t.shape)}")
        specs.append(TensorSpec(t.name, _DTYPE_NAMES[t.dtype], tuple(int(d) for d in t.shape)))
    manifest = Manifest(tuple(specs))
    if manifest.total_bytes > MAX_MODEL_BYTES:
        raise ProtocolError(
            f"manifest's tensors need {manifest.total_bytes} bytes, beyond int64 (2^63 - 1)"
        )
    if manifest.total_bytes != message.total_bytes:
        raise ProtocolError(
            f"manifest says {message.total_bytes} bytes but its tensors need {manifest.total_bytes}"
        )
    if max_bytes is not None and manifest.total_bytes > max_bytes:
        raise ProtocolError(f"model of {manifest.total_bytes} bytes exceeds the cap {max_bytes}")
    return manifest


def decode(manifest: Manifest, data: bytes | bytearray | memoryview) -> Weights:
    """Arrays viewing ``data`` (read-only, no copy), after checking the size matches exactly."""
    if len(data) != manifest.total_bytes:
        raise ProtocolError(f"expected {manifest.total_bytes} data bytes, got {len(data)}")
    out: Weights = {}
    for spec, offset in manifest.offsets():
        flat = np.frombuffer(data, dtype=spec.numpy_dtype, count=spec.size, offset=offset)
        out[spec.name] = flat.reshape(spec.shape)
    return out


def check_finite(weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
    """Raise NonFiniteError naming the first float tensor holding a NaN or an infinity.

    Checked in blocks through one small mask: ``np.isfinite`` of a whole tensor would allocate
    a boolean array a quarter of a float32 model's size per concurrent upload, and medium-sized
    temporaries freed on many server threads can linger in the allocator's per-thread arenas.
    """
    mask = np.empty(FINITE_BLOCK, dtype=np.bool_)
    for name, array in weights.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue
        flat = np.ravel(array)  # a view for C-contiguous arrays
        for start in range(0, flat.size, FINITE_BLOCK):
            block = flat[start : start + FINITE_BLOCK]
            if not bool(np.isfinite(block, out=mask[: block.size]).all()):
                raise NonFiniteError(f"tensor {name!r} holds NaN or infinite values")


def same_layout(expected: Manifest, got: Manifest) -> None:
    """Raise unless ``got`` has exactly the tensors, dtypes and shapes of ``expected``."""
    if expected == got:
        return
    exp = {t.name: t for t in expected.tensors}
    for t in got.tensors:
        if t.name not in exp:
            raise ProtocolError(f"unexpected tensor {t.name!r}")
        if exp[t.name] != t:
            e = exp[t.name]
            raise ProtocolError(
                f"tensor {t.name!r}: got {t.dtype}{list(t.shape)}, "
                f"expected {e.dtype}{list(e.shape)}"
            )
    missing = [n for n in exp if n not in {t.name for t in got.tensors}]
    raise ProtocolError(
        f"missing tensors {missing}" if missing else "tensors are in the wrong order"
    )
