"""Patient consent per study, enforced by the database.

The steward records decisions with :class:`Consents` (grant, revoke, FHIR Consent import, show)
and switches a study on with :meth:`Consents.enable`; the node reads every round through
:func:`consented_reader`, which shows only consented persons and records the consented N and the
consent-log watermark it read at. PostgreSQL enforces this with row-level security and a per-study
role (:mod:`.postgres`); the embedded DuckDB store with views, a weaker filter (:mod:`.embedded`).
"""

from medfed.data.consent.fhir import Refusal
from medfed.data.consent.model import ConsentState, ConsentSummary, Decision, LogEntry, PersonRef
from medfed.data.consent.reader import ConsentedReader, consented_reader
from medfed.data.consent.registry import Consents, ImportReport

__all__ = [
    "ConsentState",
    "ConsentSummary",
    "ConsentedReader",
    "Consents",
    "Decision",
    "ImportReport",
    "LogEntry",
    "PersonRef",
    "Refusal",
    "consented_reader",
]
