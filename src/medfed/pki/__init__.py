"""The consortium PKI: CA, CSRs, issuing, revocation and identities read from certificates."""

from medfed.pki.ca import CertificateAuthority, IssuedFiles
from medfed.pki.csr import make_csr
from medfed.pki.identity import Identity, Role, identity_from_cert, identity_from_pem
from medfed.pki.index import IssuedRecord
from medfed.pki.revocation import CrlWatcher, RevocationList

__all__ = [
    "CertificateAuthority",
    "CrlWatcher",
    "Identity",
    "IssuedFiles",
    "IssuedRecord",
    "RevocationList",
    "Role",
    "identity_from_cert",
    "identity_from_pem",
    "make_csr",
]
