"""The one error tree of medfed.

    MedfedError
    ├── ConfigError            a config, study spec or CLI argument is invalid
    ├── PkiError               a certificate, key, CSR or CRL cannot be made or read
    │   └── IdentityError      a peer certificate carries no usable medfed identity
    ├── ProtocolError          a message is malformed (bad manifest, dtype, shape, size, hash)
    │   └── NonFiniteError     a tensor holds NaN or infinity
    ├── StoreError             persisted state is missing or inconsistent
    ├── LedgerError            the ledger does not verify: tampered, reordered, forked
    │   └── EquivocationError  the coordinator signed two different entries for one height
    ├── DatasetError           a local dataset is unknown or does not match its declared schema
    │   └── EtlError           a FHIR bundle or vocabulary file cannot be loaded into OMOP
    ├── ConsentError           consent cannot be recorded or enforced (e.g. reading as a superuser)
    ├── DisclosureError        a statistic would disclose a small cell, subset or difference
    ├── PolicyError            the node's local policy refuses a task (unknown plan, dataset)
    ├── GovernanceError        a council proposal or vote is invalid, or a study breaks the rules
    ├── TrainingError          a training plan failed or is unknown
    │   └── ClientPlanError    a hospital's own (Flower-style) client failed or misbehaved
    ├── AttackError            a privacy attack or audit cannot run on these inputs
    ├── BundleError            a model bundle is malformed, altered, or does not fit the data
    ├── StrategyError          aggregation cannot proceed (no replies, bad parameters)
    ├── SecAggError            secure aggregation must abort (bad signature, too few survivors)
    └── TransportError         the network failed
        └── AuthError          the peer refused our certificate or role: retrying will not help

Every message says what was wrong and, where it helps, what to do about it.
"""


class MedfedError(Exception):
    """Root of every error medfed raises on purpose."""


class ConfigError(MedfedError):
    """A config file, study spec or argument is invalid."""


class PkiError(MedfedError):
    """A certificate, key, CSR or CRL cannot be created, loaded or verified."""


class IdentityError(PkiError):
    """A peer certificate carries no usable medfed identity (CN + role)."""


class ProtocolError(MedfedError):
    """A wire message is malformed: manifest, dtype, shape, size or hash."""


class NonFiniteError(ProtocolError):
    """A tensor holds NaN or infinity."""


class StoreError(MedfedError):
    """Persisted state is missing or inconsistent."""


class LedgerError(MedfedError):
    """The ledger does not verify (a changed, dropped or reordered entry, a bad signature, a fork,
    or two signed heads for one height); the message names the entry and what failed."""


class EquivocationError(LedgerError):
    """Two entries for one height, both signed by the coordinator: the message carries both
    heads, which together prove the coordinator showed different histories."""


class DatasetError(MedfedError):
    """A local dataset is unknown or does not match its declared schema."""


class EtlError(DatasetError):
    """A FHIR bundle or vocabulary file cannot be loaded into the OMOP store; it names the file."""


class ConsentError(MedfedError):
    """Consent cannot be recorded, or the database cannot enforce it for this session."""


class DisclosureError(MedfedError):
    """A statistic would disclose: a subset, or the rows it removes, below the site's threshold."""


class SecAggError(MedfedError):
    """Secure aggregation must abort this round: a key advertisement fails its signature check, a
    share does not decrypt, or fewer than the threshold of nodes are left."""


class PolicyError(MedfedError):
    """The node's local policy refuses a task."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class GovernanceError(MedfedError):
    """A council proposal or vote is invalid (not a council member, a second vote, a decided
    proposal), or a study breaks the consortium's rules in force."""


class TrainingError(MedfedError):
    """A training plan failed or is not installed."""


class ClientPlanError(TrainingError):
    """A hospital's own client code (``medfed.compat``) cannot be loaded, raised, or returned
    what the study cannot use (wrong count, shape or dtype of arrays, NaN, a bad count)."""


class AttackError(MedfedError):
    """A privacy attack or membership audit cannot run on these inputs (one class only, too few
    rows, mismatched arrays); the message says which."""


class BundleError(MedfedError):
    """A downloaded model bundle is malformed or altered, or the data offered does not fit it."""


class StrategyError(MedfedError):
    """Aggregation cannot proceed."""


class TransportError(MedfedError):
    """The network failed."""


class AuthError(TransportError):
    """The peer refused our certificate or role; retrying will not help."""
