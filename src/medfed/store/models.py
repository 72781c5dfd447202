"""Content-addressed model store: every global model is a file named by its SHA-256.

A model's name is ``medfed.protocol.tensors.weights_sha256`` of its weights, so the same weights
always land in the same file whatever produced them, and a file whose bytes no longer match its name
is detected on every read (the hash is recomputed, never trusted from the file). A coordinator
killed at any instant must restart with bit-identical weights, so files are written atomically:
temp file in the same directory, fsync, rename, fsync the directory (the rename is what makes the
model exist; without the directory fsync a power loss can forget it).

Files are safetensors: a JSON header plus raw little-endian bytes, no code execution on load.
safetensors sorts tensors by name internally, so the original order, which is part of the model's
identity, is kept in the header's ``__metadata__`` as ``{"order": [...], "sha256": ...}``.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from medfed.errors import ProtocolError, StoreError
from medfed.protocol.tensors import (
    Manifest,
    Weights,
    decode,
    sha256_of,
    weights_sha256,
)
from medfed.store.mapped import StoredModel, open_file, tensor_order

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SUFFIX = ".safetensors"
_RESERVED_NAME = "__metadata__"


def check_sha256(sha: str) -> str:
    """Return ``sha`` if it is 64 lowercase hex digits; refuse anything else before it nears a
    path (a model id is joined into file paths, so ``../`` must never get that far)."""
    if not isinstance(sha, str) or _SHA256_HEX.fullmatch(sha) is None:
        raise StoreError(f"{sha!r} is not a model id (expected 64 lowercase hex digits of SHA-256)")
    return sha


class ModelStore:
    """Global models on disk: one immutable safetensors file per SHA-256, sharded by first byte."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        return self._root

    def path(self, sha: str) -> Path:
        check_sha256(sha)
        return self._root / sha[:2] / f"{sha}{_SUFFIX}"

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, weights: Mapping[str, npt.NDArray[np.generic]]) -> str:
        """Store ``weights`` and return their SHA-256; a model already stored is not rewritten."""
        try:
            sha = weights_sha256(weights)
        except ProtocolError as exc:
            raise StoreError(f"cannot store model: {exc}") from exc
        if not self.has(sha):
            self._write(sha, weights)
        return sha

    def put_raw(self, manifest: Manifest, data_path: Path, sha256: str) -> str:
        """Store a model received as raw concatenated tensor bytes (the wire layout).

        The hash is recomputed from ``data_path`` even though the caller validated it: a
        content-addressed store must never hold a file whose name lies about its bytes.
        """
        check_sha256(sha256)
        if self.has(sha256):
            return sha256
        data = _map_raw(data_path, manifest.total_bytes)
        got = sha256_of(manifest, [data])
        if got != sha256:
            raise StoreError(f"raw model {data_path} hashes to {got}, not {sha256}")
        self._write(sha256, decode(manifest, data))
        return sha256

    def open(self, sha: str) -> StoredModel:
        """The model opened in place (:mod:`medfed.store.mapped`): read-only arrays mapped from
        its file, after checking the file's bytes still hash to ``sha``."""
        path = self.path(sha)
        if not path.is_file():
            raise StoreError(f"model {sha} not in store {self._root}")
        return open_file(path, sha)

    def put_and_open(self, weights: Mapping[str, npt.NDArray[np.generic]]) -> StoredModel:
        """``put`` then ``open``. A file this call writes is not read back to be hashed again:
        its bytes are the ones just hashed (a file already there is checked like any read)."""
        try:
            sha = weights_sha256(weights)
        except ProtocolError as exc:
            raise StoreError(f"cannot store model: {exc}") from exc
        if self.has(sha):
            return self.open(sha)
        self._write(sha, weights)
        return open_file(self.path(sha), sha, check=False)

    def get(self, sha: str) -> Weights:
        """Load a model in its original tensor order, checking its bytes still hash to ``sha``.

        The arrays are fresh copies owned by the caller: changing them never touches the store.
        """
        path = self.path(sha)
        if not path.is_file():
            raise StoreError(f"model {sha} not in store {self._root}")
        try:
            with safe_open(str(path), framework="np") as f:
                order = tensor_order(f.metadata(), set(f.keys()), path)
                weights: Weights = {name: f.get_tensor(name) for name in order}
            got = weights_sha256(weights)
        # KeyError: a dtype NumPy's safetensors loader lacks (bf16); ProtocolError: one the wire
        # codec refuses. Either means the file is not one this store wrote.
        except (SafetensorError, OSError, KeyError, ValueError, ProtocolError) as exc:
            raise StoreError(f"model file {path} is unreadable: {exc}") from exc
        if got != sha:
            raise StoreError(f"model file {path} is corrupt: its tensors hash to {got}")
        return weights

    def _write(self, sha: str, weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
        if _RESERVED_NAME in weights:
            raise StoreError(
                f"tensor name {_RESERVED_NAME!r} is reserved by the safetensors format"
            )
        # safetensors reads raw memory through data pointers: arrays must be C-contiguous
        # (np.ascontiguousarray would not do: it turns a 0-d array into shape (1,)).
        tensors = {name: _c_order(array) for name, array in weights.items()}
        metadata = {"order": json.dumps(list(weights)), "sha256": sha}
        _atomic_write(self.path(sha), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _c_order(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    array = np.asarray(array)  # a NumPy scalar has no data pointer for safetensors to read
    return array if array.flags.c_contiguous else array.copy(order="C")


def _map_raw(path: Path, size: int) -> memoryview:
    """``path`` memory-mapped read-only, so a large model is never copied into memory whole.

    The map closes itself when the last array viewing it is gone.
    """
    try:
        with path.open("rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise StoreError(f"raw model {path} holds {actual} bytes, manifest says {size}")
            if size == 0:  # mmap refuses empty files
                return memoryview(b"")
            return memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ))
    except OSError as exc:
        raise StoreError(f"raw model {path} is unreadable: {exc}") from exc


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Create ``target`` so that after a crash it is either absent or complete and durable."""
    directory = target.parent
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    if created:
        _fsync_dir(directory.parent)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # fsync flushes the inode's dirty pages whichever descriptor asks; save_file wrote them.
        with tmp.open("rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
