"""The consortium PKI: CA, CSRs, issuing, revocation and identities read from certificates.

Import from the modules (``medfed.pki.ca``, ``medfed.pki.identity``, ...): this package file
imports nothing, so reading a role does not load the CA and cryptography with it.
"""
