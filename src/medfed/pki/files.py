"""Writing PKI files so that a crash never leaves half a file and a key is never world-readable.

Every write goes to a temporary file in the target directory (created 0600 by ``mkstemp``), is
flushed to disk, given its final mode and then ``os.replace``-d over the target: readers see either
the old file or the new one. A private key therefore exists only ever with mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medfed.errors import PkiError

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Replace ``path`` with ``data`` in one step; the file has ``mode`` from its first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_new(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Like :func:`write_atomic`, but refuse to replace a file that is already there.

    Keys and certificates are never silently overwritten: the old key may still back a
    certificate in use, and losing it locks a hospital out.
    """
    if path.exists():
        raise PkiError(f"{path} already exists; remove it or choose another output directory")
    write_atomic(path, data, mode=mode)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: gRPC reads keys without a passphrase, so file mode is the guard."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def read_file(path: Path, what: str) -> bytes:
    """Read ``path``, turning a missing or unreadable file into a :class:`PkiError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
