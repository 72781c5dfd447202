"""A stored model opened in place: arrays mapped read-only from its file, bytes read in wire order.

The coordinator serves the global model to every hospital each round and hands it to the
strategy. Loading it into private memory would keep a second copy of bytes the OS already caches
for the file just written (40 MB at 10M float32 parameters). Instead the arrays are views of a
read-only memory map of the safetensors file, which cost memory only where a strategy actually
reads values (FedAvg reads none), and a download streams the bytes with ``pread`` from the page
cache, which is shared and reclaimable, never through the map.

The safetensors header (a little-endian u64 length, then JSON giving each tensor's dtype, shape
and byte range) is parsed here, strictly: every range must lie inside the file and hold exactly
the bytes its dtype and shape need. Only the JSON is parsed; nothing in the file is executed.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfed.errors import StoreError
from medfed.protocol.framing import CHUNK_BYTES
from medfed.protocol.tensors import Manifest, TensorSpec, Weights, hasher

_DTYPES = {
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "BOOL": "bool",
    "U32": "uint32",
}
"""safetensors dtype codes -> the wire codec's dtype names (exactly the dtypes the store writes)."""
_MAX_HEADER_BYTES = 100 * 1024 * 1024
"""safetensors' own limit on the JSON header."""


@dataclass(frozen=True)
class Layout:
    """Where each tensor's bytes lie in the file, in the model's own order."""

    manifest: Manifest
    starts: tuple[int, ...]
    """Absolute file offset of each tensor's data, in manifest order."""

    def segments(self) -> Iterator[tuple[int, int]]:
        """(file offset, length) of each tensor's data, in manifest (wire) order."""
        for spec, start in zip(self.manifest.tensors, self.starts, strict=True):
            yield start, spec.nbytes


@dataclass(frozen=True)
class StoredModel:
    """A model as its file holds it: read-only mapped arrays plus a reader of its wire bytes."""

    sha256: str
    path: Path
    layout: Layout
    weights: Weights

    @property
    def manifest(self) -> Manifest:
        return self.layout.manifest

    def data_chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The model's data in manifest order, ``size`` bytes per piece (the last may be
        shorter), read from the file: nothing is mapped into this process to serve it.

        The bytes are not hashed again here; the receiver checks the model's hash."""
        with self.path.open("rb") as f:
            fd = f.fileno()
            pending = bytearray()
            for start, length in self.layout.segments():
                pos, end = start, start + length
                while pos < end:
                    if pending or end - pos < size:
                        take = min(size - len(pending), end - pos)
                        pending += _pread_exact(fd, take, pos, self.path)
                        pos += take
                        if len(pending) == size:
                            yield bytes(pending)
                            pending.clear()
                    else:
                        yield _pread_exact(fd, size, pos, self.path)
                        pos += size
            if pending:
                yield bytes(pending)


def open_file(path: Path, sha: str, check: bool = True) -> StoredModel:
    """Open a store file in place; with ``check`` (the default) its bytes must hash to ``sha``,
    read through one small buffer so that checking maps nothing into memory either."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            layout = _read_layout(f.fileno(), size, path)
            if check:
                got = _file_sha256(f.fileno(), layout, path)
                if got != sha:
                    raise StoreError(f"model file {path} is corrupt: its tensors hash to {got}")
            weights = _map(f.fileno(), layout)
    except OSError as exc:
        raise StoreError(f"model file {path} is unreadable: {exc}") from exc
    return StoredModel(sha, path, layout, weights)


def tensor_order(metadata: Mapping[str, object] | None, names: set[str], path: Path) -> list[str]:
    """The model's tensor order, which the store keeps in the header's metadata (safetensors
    itself sorts tensors by name, and the order is part of a model's identity)."""
    try:
        order = json.loads((metadata or {})["order"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"model file {path} has no tensor order in its metadata") from exc
    if not isinstance(order, list) or len(order) != len(names) or set(order) != names:
        raise StoreError(f"model file {path}: metadata order does not list its tensors")
    return [str(name) for name in order]


def _read_layout(fd: int, size: int, path: Path) -> Layout:
    head = _pread_exact(fd, 8, 0, path)
    length = int.from_bytes(head, "little")
    if length > min(_MAX_HEADER_BYTES, size - 8):
        raise StoreError(f"model file {path}: header of {length} bytes does not fit the file")
    try:
        header = json.loads(_pread_exact(fd, length, 8, path))
    except ValueError as exc:
        raise StoreError(f"model file {path}: header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise StoreError(f"model file {path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    order = tensor_order(metadata if isinstance(metadata, Mapping) else None, set(header), path)
    base = 8 + length
    specs, starts = [], []
    for name in order:
        spec, begin = _tensor(name, header[name], path)
        if begin < 0 or base + begin + spec.nbytes > size:
            raise StoreError(f"model file {path}: tensor {name!r} lies outside the file")
        specs.append(spec)
        starts.append(base + begin)
    return Layout(Manifest(tuple(specs)), tuple(starts))


def _tensor(name: str, entry: object, path: Path) -> tuple[TensorSpec, int]:
    try:
        if not isinstance(entry, Mapping):
            raise TypeError("not an object")
        dtype = _DTYPES[entry["dtype"]]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(x) for x in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"model file {path}: tensor {name!r} has a malformed entry") from exc
    spec = TensorSpec(name, dtype, shape)
    if any(d < 0 for d in shape) or end - begin != spec.nbytes:
        raise StoreError(f"model file {path}: tensor {name!r} does not hold {dtype}{list(shape)}")
    return spec, begin


def _file_sha256(fd: int, layout: Layout, path: Path) -> str:
    digest = hasher(layout.manifest)
    buffer = memoryview(bytearray(CHUNK_BYTES))
    for start, length in layout.segments():
        done = 0
        while done < length:
            got = os.preadv(fd, [buffer[: min(len(buffer), length - done)]], start + done)
            if got <= 0:
                raise StoreError(f"model file {path} is truncated")
            digest.update(buffer[:got])
            done += got
    return digest.hexdigest()


def _map(fd: int, layout: Layout) -> Weights:
    """Read-only arrays over one shared map of the file (it closes with its last array)."""
    region = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    out: Weights = {}
    for spec, start in zip(layout.manifest.tensors, layout.starts, strict=True):
        if spec.size == 0:
            array = np.empty(spec.shape, dtype=spec.numpy_dtype)
            array.flags.writeable = False
        else:
            flat = np.frombuffer(region, dtype=spec.numpy_dtype, count=spec.size, offset=start)
            array = flat.reshape(spec.shape)
        out[spec.name] = array
    return out


def _pread_exact(fd: int, count: int, offset: int, path: Path) -> bytes:
    data = os.pread(fd, count, offset)
    if len(data) != count:
        raise StoreError(f"model file {path} is truncated")
    return data
