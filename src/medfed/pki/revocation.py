"""Revocation: which certificates the CA has withdrawn, read from its signed CRL (RFC 5280 s.5).

TLS has already verified a peer's chain; what it cannot know is that the CA later revoked the
peer (a stolen laptop, a hospital leaving the consortium). Servers therefore check every peer's
serial against the CA's CRL, which :class:`CrlWatcher` keeps current without a restart.

A CRL past its ``next_update`` is still used (with :meth:`RevocationList.is_stale` for callers to
warn about): refusing it would lock every participant out the day the operator forgets to run
``medfed pki crl``, while the revocations it lists stay true.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from medfed.errors import PkiError
from medfed.pki.files import read_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevocationList:
    """An immutable, verified snapshot of one CRL."""

    serials: frozenset[int] = frozenset()
    next_update: datetime | None = None
    number: int | None = None

    @classmethod
    def load(cls, crl_path: Path, ca_cert_path: Path) -> RevocationList:
        """Read ``crl_path`` and accept it only if the CA at ``ca_cert_path`` signed it."""
        ca_key = _ca_public_key(ca_cert_path)
        try:
            crl = x509.load_pem_x509_crl(read_file(crl_path, "CRL"))
        except ValueError as exc:
            raise PkiError(f"{crl_path} is not a PEM CRL: {exc}") from None
        if not crl.is_signature_valid(ca_key):
            raise PkiError(f"{crl_path} is not signed by the CA in {ca_cert_path}")
        try:
            number: int | None = crl.extensions.get_extension_for_class(
                x509.CRLNumber
            ).value.crl_number
        except x509.ExtensionNotFound:
            number = None
        serials = frozenset(revoked.serial_number for revoked in crl)
        return cls(serials=serials, next_update=crl.next_update_utc, number=number)

    @classmethod
    def empty(cls) -> RevocationList:
        return cls()

    def is_revoked(self, serial: int) -> bool:
        return serial in self.serials

    def is_stale(self, now: datetime) -> bool:
        """True once the CA promised a newer CRL and none has been loaded."""
        return self.next_update is not None and now >= self.next_update


_FileState = tuple[int, int, int]


class CrlWatcher:
    """Thread-safe holder of the current CRL, reloaded when the file on disk changes.

    The constructor loads strictly (a missing or forged CRL at start-up raises
    :class:`PkiError`: a server must not start without the revocations it was told to enforce).
    Later :meth:`refresh` calls are forgiving: a broken new file is logged once and the last good
    CRL stays in force. ``refresh`` costs one ``stat`` when nothing changed, so callers may run
    it on every connection. ``crl_path=None`` means no revocation checking.
    """

    def __init__(self, crl_path: Path | None, ca_cert_path: Path) -> None:
        self._crl_path = crl_path
        self._ca_cert_path = ca_cert_path
        self._lock = threading.Lock()
        self._current = RevocationList.empty()
        self._seen: _FileState | None = None
        if crl_path is not None:
            state = _file_state(crl_path)
            self._current = RevocationList.load(crl_path, ca_cert_path)
            self._seen = state

    @property
    def current(self) -> RevocationList:
        with self._lock:
            return self._current

    def refresh(self) -> bool:
        """Reload if the file changed; True if a new CRL was loaded."""
        if self._crl_path is None:
            return False
        with self._lock:
            try:
                state: _FileState | None = _file_state(self._crl_path)
            except PkiError as exc:
                state = None
                if self._seen is not None:
                    logger.error("keeping the previous CRL: %s", exc)
            if state is None or state == self._seen:
                self._seen = state
                return False
            self._seen = state  # stat before read: a write racing the read shows up next time
            try:
                self._current = RevocationList.load(self._crl_path, self._ca_cert_path)
            except PkiError as exc:
                logger.error("keeping the previous CRL: %s", exc)
                return False
            return True

    def is_revoked(self, serial: int) -> bool:
        with self._lock:
            return self._current.is_revoked(serial)


def _file_state(path: Path) -> _FileState:
    """(inode, mtime_ns, size): the inode changes on every atomic replace even within one tick."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise PkiError(f"cannot read CRL {path}: {exc.strerror or exc}") from None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _ca_public_key(ca_cert_path: Path) -> ec.EllipticCurvePublicKey:
    try:
        cert = x509.load_pem_x509_certificate(read_file(ca_cert_path, "CA certificate"))
    except ValueError as exc:
        raise PkiError(f"{ca_cert_path} is not a PEM certificate: {exc}") from None
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PkiError(f"{ca_cert_path} does not hold an ECDSA CA key")
    return key
