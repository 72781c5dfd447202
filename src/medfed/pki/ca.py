"""The consortium certificate authority: an offline root that issues, signs and revokes.

The CA is a directory::

    ca.crt      root certificate (distributed to every participant)
    ca.key      root private key, mode 0600; keep this directory off the network
    index.json  register of every certificate issued (see :mod:`medfed.pki.index`)
    crl.pem     the current certificate revocation list, re-signed on every revocation

Two ways to get a certificate: :meth:`CertificateAuthority.issue` generates the key at the CA
(convenient for a coordinator or a test bed), :meth:`CertificateAuthority.sign_csr` signs a
request whose key was generated at the hospital and never left it (the production path).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medfed.errors import PkiError
from medfed.pki.csr import load_csr, requested_role, requested_sans
from medfed.pki.files import PRIVATE_MODE, private_key_pem, read_file, write_atomic, write_new
from medfed.pki.identity import Role, check_name, subject_name
from medfed.pki.index import CaIndex, IssuedRecord, load_index, save_index
from medfed.pki.profiles import (
    ca_extensions,
    check_public_key,
    generate_key,
    leaf_extensions,
    leaf_sans,
    utc_now,
    validity,
)

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
INDEX_FILE = "index.json"
CRL_FILE = "crl.pem"
CA_COMMON_NAME = "medfed consortium root CA"
CRL_VALID_DAYS = 7
"""A CRL is re-signed at least weekly (``medfed pki crl``), so a stolen key stays usable at
most a week after the CA stops publishing, and peers notice a CA that went silent."""

_MAX_CONSORTIUM_LENGTH = 64  # X.520 upper bound for organizationName


@dataclass(frozen=True)
class IssuedFiles:
    """Where :meth:`CertificateAuthority.issue` wrote the certificate and its key."""

    cert: Path
    key: Path | None


class CertificateAuthority:
    """A loaded CA directory; every change re-reads ``index.json`` and writes it back atomically."""

    def __init__(
        self, ca_dir: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self._dir = ca_dir
        self._cert = cert
        self._key = key

    @classmethod
    def init(
        cls,
        out_dir: Path,
        consortium: str,
        *,
        valid_days: int = 3650,
        now: datetime | None = None,
    ) -> CertificateAuthority:
        """Create a new root CA in ``out_dir``; refuses if a CA is already there."""
        _check_consortium(consortium)
        for existing in (CA_CERT_FILE, CA_KEY_FILE, INDEX_FILE):
            if (out_dir / existing).exists():
                raise PkiError(f"{out_dir / existing} exists: refusing to overwrite a CA")
        moment = utc_now(now)
        key = generate_key()
        not_before, not_after = validity(moment, valid_days)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, consortium),
            ]
        )
        builder = _builder(name, name, key.public_key(), not_before, not_after)
        for extension, critical in ca_extensions(key.public_key()):
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(key, hashes.SHA256())
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_new(out_dir / CA_KEY_FILE, private_key_pem(key), mode=PRIVATE_MODE)
        write_new(out_dir / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
        save_index(out_dir / INDEX_FILE, CaIndex(consortium=consortium))
        ca = cls(out_dir, cert, key)
        ca.write_crl(now=moment)
        return ca

    @classmethod
    def load(cls, ca_dir: Path) -> CertificateAuthority:
        """Open an existing CA directory, checking that the key belongs to the certificate."""
        cert = _load_cert(ca_dir / CA_CERT_FILE)
        key = _load_key(ca_dir / CA_KEY_FILE)
        if key.public_key() != cert.public_key():
            raise PkiError(f"{ca_dir / CA_KEY_FILE} is not the key of {ca_dir / CA_CERT_FILE}")
        load_index(ca_dir / INDEX_FILE)  # fail now, not at the first issue, if it is unreadable
        return cls(ca_dir, cert, key)

    @property
    def ca_cert_path(self) -> Path:
        return self._dir / CA_CERT_FILE

    @property
    def crl_path(self) -> Path:
        return self._dir / CRL_FILE

    @property
    def consortium(self) -> str:
        values = self._cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(values[0].value) if values else ""

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    def issue(
        self,
        name: str,
        role: Role,
        out_dir: Path,
        *,
        sans: Sequence[str] = (),
        valid_days: int = 825,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        now: datetime | None = None,
    ) -> IssuedFiles:
        """Generate a key here and issue its certificate into ``out_dir`` with a copy of ca.crt.

        ``not_before``/``not_after`` override the validity window (tests use them to make an
        expired certificate). Existing ``<name>.crt``/``<name>.key`` are never overwritten.
        """
        check_name(name)
        cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
        for path in (cert_path, key_path):
            if path.exists():
                raise PkiError(f"{path} already exists; remove it or choose another --out")
        key = generate_key()
        window = validity(utc_now(now), valid_days, not_before, not_after)
        cert = self._sign_leaf(name, role, key.public_key(), leaf_sans(role, sans), window)
        write_new(key_path, private_key_pem(key), mode=PRIVATE_MODE)
        write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        self.copy_ca_cert(out_dir)
        return IssuedFiles(cert=cert_path, key=key_path)

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        role: Role | None = None,
        sans: Sequence[str] = (),
        valid_days: int = 825,
        now: datetime | None = None,
    ) -> bytes:
        """Sign a hospital's CSR after checking its self-signature; return the certificate PEM.

        The name comes from the CSR's CN, the role from ``role`` or else the CSR's OU, and the
        SANs are those requested in the CSR plus ``sans``. A CSR naming another consortium is
        refused, since the hospital evidently meant another CA.
        """
        csr = load_csr(csr_pem)
        name = check_name(_csr_common_name(csr))
        self._check_csr_consortium(csr)
        chosen = role if role is not None else requested_role(csr)
        names = leaf_sans(chosen, [*requested_sans(csr), *sans])
        window = validity(utc_now(now), valid_days)
        public_key = check_public_key(csr.public_key())
        cert = self._sign_leaf(name, chosen, public_key, names, window)
        return cert.public_bytes(serialization.Encoding.PEM)

    def revoke(self, name: str, *, now: datetime | None = None) -> int:
        """Revoke every unrevoked certificate of ``name`` and re-sign the CRL; return the count."""
        moment = utc_now(now)
        index, count = load_index(self._dir / INDEX_FILE).revoke(name, moment)
        if count == 0:
            raise PkiError(f"no unrevoked certificate was issued to {name!r} by this CA")
        save_index(self._dir / INDEX_FILE, index)
        self.write_crl(now=moment)
        return count

    def write_crl(self, *, now: datetime | None = None, valid_days: int = CRL_VALID_DAYS) -> Path:
        """Sign a fresh CRL of every revoked serial into ``crl.pem`` (``medfed pki crl``)."""
        moment = utc_now(now)
        index = load_index(self._dir / INDEX_FILE).next_crl()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._cert.subject)
            .last_update(moment)
            .next_update(moment + timedelta(days=valid_days))
            .add_extension(x509.CRLNumber(index.crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for record in index.revoked():
            if record.revoked_at is not None:
                revoked = (
                    x509.RevokedCertificateBuilder()
                    .serial_number(record.serial)
                    .revocation_date(record.revoked_at)
                    .build()
                )
                builder = builder.add_revoked_certificate(revoked)
        crl = builder.sign(self._key, hashes.SHA256())
        save_index(self._dir / INDEX_FILE, index)
        write_atomic(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path

    def issued(self) -> list[IssuedRecord]:
        return list(load_index(self._dir / INDEX_FILE).records)

    def copy_ca_cert(self, out_dir: Path) -> Path:
        """Put ca.crt next to a leaf so the participant gets its trust anchor in the same folder."""
        target = out_dir / CA_CERT_FILE
        if not target.exists() or not target.samefile(self.ca_cert_path):
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.ca_cert_path, target)
        return target

    def _sign_leaf(
        self,
        name: str,
        role: Role,
        public_key: ec.EllipticCurvePublicKey,
        sans: Sequence[x509.GeneralName],
        window: tuple[datetime, datetime],
    ) -> x509.Certificate:
        """Sign a leaf and record it in the index before anyone can see the certificate."""
        if window[1] > self._cert.not_valid_after_utc:
            raise PkiError(
                f"a certificate until {window[1]:%Y-%m-%d} would outlive the CA (valid until "
                f"{self._cert.not_valid_after_utc:%Y-%m-%d}); ask for fewer days"
            )
        subject = subject_name(name, role, self.consortium)
        builder = _builder(subject, self._cert.subject, public_key, *window)
        for extension, critical in leaf_extensions(role, public_key, self._key.public_key(), sans):
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(self._key, hashes.SHA256())
        record = IssuedRecord(cert.serial_number, name, role, cert.not_valid_after_utc)
        save_index(self._dir / INDEX_FILE, load_index(self._dir / INDEX_FILE).add(record))
        return cert

    def _check_csr_consortium(self, csr: x509.CertificateSigningRequest) -> None:
        for attribute in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
            if attribute.value != self.consortium:
                raise PkiError(
                    f"CSR is for consortium {attribute.value!r}, this CA is {self.consortium!r}"
                )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _check_consortium(consortium: str) -> None:
    if not consortium.strip() or len(consortium) > _MAX_CONSORTIUM_LENGTH:
        raise PkiError(
            f"consortium name must be 1-{_MAX_CONSORTIUM_LENGTH} characters, got {consortium!r}"
        )


def _csr_common_name(csr: x509.CertificateSigningRequest) -> str:
    values = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise PkiError("CSR subject must carry exactly one CN (the identity name)")
    return values[0].value


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_file(path, "CA certificate"))
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM certificate: {exc}") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(read_file(path, "CA key"), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} holds a {type(key).__name__}, expected an ECDSA P-256 key")
    return key
