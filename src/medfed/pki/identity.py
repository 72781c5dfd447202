"""Who a certificate speaks for: the identity model of the consortium.

An identity is read from the certificate's subject and nothing else: CN is the identity's name
(``cleveland``), OU its role (``node``, ``admin`` or ``coordinator``) and O the consortium. The
name alphabet is deliberately narrow (lowercase, digits, ``_ . -``) so a name can be used as a
file name, a log field and a database key without quoting or escaping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from medfed.errors import IdentityError, PkiError

if TYPE_CHECKING:  # cryptography loads when a certificate is read, not with ``medfed --help``
    from cryptography import x509

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
"""Matched with ``fullmatch``: a ``$`` anchor would let a trailing newline through."""

RESERVED_NAMES = frozenset({"ca"})
"""``ca`` would make ``<name>.crt`` collide with the CA certificate copied next to every leaf."""


class Role(StrEnum):
    """What a certificate holder may do; carried in the subject OU."""

    NODE = "node"
    ADMIN = "admin"
    COORDINATOR = "coordinator"


@dataclass(frozen=True)
class Identity:
    """A verified peer: its name, role and the serial that revocation is checked against."""

    name: str
    role: Role
    serial: int
    not_after_unix: float = field(default=0.0, compare=False)
    """When the certificate expires (Unix seconds; 0: not read from a certificate). Not part
    of who the peer is: two identities are equal by name, role and serial."""


def check_name(name: str) -> str:
    """Return ``name`` if it may be issued a certificate, else raise :class:`PkiError`."""
    if not NAME_PATTERN.fullmatch(name):
        raise PkiError(
            f"invalid identity name {name!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-' "
            "starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise PkiError(f"identity name {name!r} is reserved for the consortium CA")
    return name


def subject_name(name: str, role: Role, consortium: str = "") -> x509.Name:
    """The subject that :func:`identity_from_cert` reads back; O is left out when empty."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, check_name(name))]
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value))
    if consortium:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, consortium))
    return x509.Name(attributes)


def identity_from_cert(cert: x509.Certificate) -> Identity:
    """Read the identity from a certificate whose chain the caller has already verified."""
    from cryptography.x509.oid import NameOID

    name = _single_attribute(cert.subject, NameOID.COMMON_NAME, "CN")
    if not NAME_PATTERN.fullmatch(name):
        raise IdentityError(f"certificate CN {name!r} is not a valid medfed identity name")
    role_text = _single_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    try:
        role = Role(role_text)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise IdentityError(
            f"certificate of {name!r} has OU {role_text!r}, not a medfed role ({roles})"
        ) from None
    return Identity(
        name=name,
        role=role,
        serial=cert.serial_number,
        not_after_unix=cert.not_valid_after_utc.timestamp(),
    )


def identity_from_pem(pem: bytes) -> Identity:
    """Parse a PEM certificate and read its identity; any failure is an :class:`IdentityError`."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise IdentityError(f"peer certificate is not a readable PEM certificate: {exc}") from None
    return identity_from_cert(cert)


def _single_attribute(subject: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    attributes = subject.get_attributes_for_oid(oid)
    if len(attributes) != 1:
        raise IdentityError(
            f"certificate subject {subject.rfc4514_string()!r} must carry exactly one {label}, "
            f"found {len(attributes)}"
        )
    value = attributes[0].value
    if not isinstance(value, str):
        raise IdentityError(f"certificate subject {label} is not a text value")
    return value
