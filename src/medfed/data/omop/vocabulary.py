"""The OMOP vocabulary at the node: loading Athena downloads and mapping source codes to concepts.

A source code (a LOINC code in a FHIR Observation, say) becomes a *standard* concept in three
steps, the way OHDSI's ETLs do it:

1. The data steward's own ``SOURCE_TO_CONCEPT_MAP`` rows win for their ``source_vocabulary_id``
   (OMOP's place for local codes that Athena does not know).
2. Otherwise the code is looked up in ``CONCEPT`` by ``(vocabulary_id, concept_code)``; a standard
   concept (``standard_concept = 'S'``) is its own answer, any other follows its valid "Maps to"
   relationship to the standard concept (a deprecated or non-standard code, say).
3. A code found nowhere maps to concept 0 ("No matching concept"); the caller keeps the code in
   ``*_source_value`` and, where the code exists but maps nowhere, its concept id in
   ``*_source_concept_id``.

The full vocabulary (several GB from athena.ohdsi.org, licensed per site) is loaded by the data
steward with :func:`load_vocabulary`; :func:`install_builtin_vocabulary` loads the small subset
shipped in ``vocabulary_subset/`` (Eunomia's concepts plus a few standard ones, see its
SOURCES.md), enough for the Synthea tests and the demo. Loading is an upsert, never a wipe: a
second folder adds to and updates what the first one put there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from medfed.data.omop.bulk import batches, insert_rows
from medfed.data.omop.csv_rows import read_rows
from medfed.data.omop.store import VOCABULARY_TABLES, OmopStore
from medfed.errors import EtlError

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).with_name("vocabulary_subset")

NO_MATCHING_CONCEPT = 0

FHIR_SYSTEM_VOCABULARIES: Mapping[str, str] = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://unitsofmeasure.org": "UCUM",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD9CM",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "http://www.whocc.no/atc": "ATC",
}
"""FHIR code system URIs (HL7's terminology registry) and the OMOP vocabulary each one is.

A site's own code system maps too: give its VOCABULARY row the system URI as
``vocabulary_reference`` and its codes as concepts or SOURCE_TO_CONCEPT_MAP rows.
"""

_LOOKUP_CHUNK = 5_000


def install_builtin_vocabulary(store: OmopStore) -> dict[str, int]:
    """Load the shipped vocabulary subset (idempotent); rows sent per table."""
    return load_vocabulary(store, BUILTIN_DIR)


def load_vocabulary(store: OmopStore, directory: Path) -> dict[str, int]:
    """Upsert every vocabulary CSV found in ``directory`` (an Athena download or the like).

    File names are matched case-blind (``CONCEPT.csv``, ``concept.csv``); each file is streamed
    and committed in batches, so a 5 GB CONCEPT_RELATIONSHIP.csv never sits in memory (nor in
    one transaction). An interrupted load leaves a partial vocabulary: run it again. Returns
    the rows read per table.
    """
    files = _vocabulary_files(directory)
    if not files:
        raise EtlError(
            f"{directory}: no vocabulary file found (expected Athena's CONCEPT.csv, "
            f"CONCEPT_RELATIONSHIP.csv, VOCABULARY.csv, ...)"
        )
    loaded: dict[str, int] = {}
    for name, path in files:
        table = store.table(name)
        loaded[name] = 0
        with path.open(encoding="utf-8", newline="") as stream:
            for batch in batches(read_rows(stream, table, str(path))):
                with store.begin() as conn:  # a batch a transaction: an upsert can be rerun
                    loaded[name] += insert_rows(conn, table, batch, upsert=True)
        log.info("vocabulary: %s rows of %s from %s", loaded[name], name, path)
    return loaded


def _vocabulary_files(directory: Path) -> list[tuple[str, Path]]:
    if not directory.is_dir():
        raise EtlError(f"{directory} is not a folder")
    found = {
        path.stem.lower(): path
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix.lower() == ".csv"
    }
    return [(name, found[name]) for name in VOCABULARY_TABLES if name in found]


@dataclass(frozen=True)
class ConceptMatch:
    """Where one source code lands."""

    concept_id: int
    """The standard concept, or 0 (no matching concept)."""
    source_concept_id: int
    """The concept of the source code itself, or 0 when the vocabulary lacks the code."""
    domain_id: str | None
    """The standard concept's domain (Measurement, Observation, ...), None when unmapped."""

    @property
    def mapped(self) -> bool:
        return self.concept_id != NO_MATCHING_CONCEPT


UNMAPPED = ConceptMatch(NO_MATCHING_CONCEPT, NO_MATCHING_CONCEPT, None)


class ConceptMapper:
    """Maps (vocabulary, code) pairs to standard concepts, caching what it has looked up.

    One mapper serves a whole load: :meth:`prefetch` asks the database once per bundle for the
    codes it has not seen, :meth:`match` then answers from memory.
    """

    def __init__(self, systems: Mapping[str, str]) -> None:
        self._systems = dict(systems)
        self._known: dict[tuple[str, str], ConceptMatch] = {}

    @classmethod
    def for_store(cls, conn: sa.Connection, store: OmopStore) -> ConceptMapper:
        """The built-in FHIR systems plus any VOCABULARY row whose reference is a system URI."""
        vocabulary = store.table("vocabulary")
        rows = conn.execute(
            sa.select(vocabulary.c.vocabulary_reference, vocabulary.c.vocabulary_id)
        ).all()
        systems = {
            reference: vocabulary_id
            for reference, vocabulary_id in rows
            if reference and reference.startswith(("http://", "https://", "urn:"))
        }
        systems.update(FHIR_SYSTEM_VOCABULARIES)  # Athena's references are download pages
        return cls(systems)

    def vocabulary_id(self, system: str | None) -> str | None:
        """The OMOP vocabulary of a FHIR code system URI, None when unknown."""
        return self._systems.get(system) if system else None

    def match(self, vocabulary_id: str | None, code: str | None) -> ConceptMatch:
        """Where a code lands; call :meth:`prefetch` first (unseen codes count as unmapped)."""
        if vocabulary_id is None or not code:
            return UNMAPPED
        return self._known.get((vocabulary_id, code), UNMAPPED)

    def prefetch(
        self, conn: sa.Connection, store: OmopStore, pairs: Iterable[tuple[str, str]]
    ) -> None:
        """Look up every (vocabulary, code) pair not seen yet, in a few queries."""
        wanted = {pair for pair in pairs if pair not in self._known}
        if not wanted:
            return
        found = self._from_source_map(conn, store, wanted)
        found.update(self._from_concepts(conn, store, wanted - found.keys()))
        for pair in wanted:
            self._known[pair] = found.get(pair, UNMAPPED)

    def _from_source_map(
        self, conn: sa.Connection, store: OmopStore, wanted: set[tuple[str, str]]
    ) -> dict[tuple[str, str], ConceptMatch]:
        stcm = store.table("source_to_concept_map")
        concept = store.table("concept")
        query = (
            sa.select(
                stcm.c.source_vocabulary_id,
                stcm.c.source_code,
                stcm.c.target_concept_id,
                stcm.c.source_concept_id,
                concept.c.domain_id,
            )
            .join(concept, concept.c.concept_id == stcm.c.target_concept_id, isouter=True)
            .where(sa.or_(stcm.c.invalid_reason.is_(None), stcm.c.invalid_reason == ""))
            .order_by(stcm.c.target_concept_id)
        )
        found: dict[tuple[str, str], ConceptMatch] = {}
        for chunk in _chunks(wanted):
            codes = sorted({code for _, code in chunk})
            rows = conn.execute(query.where(stcm.c.source_code.in_(codes))).all()
            for vocabulary_id, code, target, source, domain in rows:
                pair = (vocabulary_id, code)
                if pair in chunk and pair not in found:
                    found[pair] = ConceptMatch(int(target), int(source or 0), domain)
        return found

    def _from_concepts(
        self, conn: sa.Connection, store: OmopStore, wanted: set[tuple[str, str]]
    ) -> dict[tuple[str, str], ConceptMatch]:
        concept = store.table("concept")
        sources: dict[tuple[str, str], tuple[int, bool, str | None]] = {}
        for chunk in _chunks(wanted):
            rows = conn.execute(
                sa.select(
                    concept.c.vocabulary_id,
                    concept.c.concept_code,
                    concept.c.concept_id,
                    concept.c.standard_concept,
                    concept.c.domain_id,
                    concept.c.invalid_reason,
                )
                .where(concept.c.concept_code.in_(sorted({code for _, code in chunk})))
                .where(concept.c.vocabulary_id.in_(sorted({vocab for vocab, _ in chunk})))
                .order_by(concept.c.concept_id)
            ).all()
            for vocabulary_id, code, concept_id, standard, domain, invalid in rows:
                pair = (vocabulary_id, code)
                if pair in chunk and (pair not in sources or not invalid):  # a valid one wins
                    sources[pair] = (int(concept_id), standard == "S", domain)
        non_standard = {concept_id for concept_id, standard, _ in sources.values() if not standard}
        targets = self._maps_to(conn, store, non_standard)
        found: dict[tuple[str, str], ConceptMatch] = {}
        for pair, (concept_id, standard, domain) in sources.items():
            if standard:
                found[pair] = ConceptMatch(concept_id, concept_id, domain)
            elif concept_id in targets:
                target, target_domain = targets[concept_id]
                found[pair] = ConceptMatch(target, concept_id, target_domain)
            else:
                found[pair] = ConceptMatch(NO_MATCHING_CONCEPT, concept_id, None)
        return found

    @staticmethod
    def _maps_to(
        conn: sa.Connection, store: OmopStore, concept_ids: set[int]
    ) -> dict[int, tuple[int, str]]:
        """The standard concept each non-standard one maps to (the lowest id when several)."""
        relationship = store.table("concept_relationship")
        concept = store.table("concept")
        targets: dict[int, tuple[int, str]] = {}
        ids = sorted(concept_ids)
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            rows = conn.execute(
                sa.select(relationship.c.concept_id_1, concept.c.concept_id, concept.c.domain_id)
                .join(concept, concept.c.concept_id == relationship.c.concept_id_2)
                .where(relationship.c.relationship_id == "Maps to")
                .where(
                    sa.or_(
                        relationship.c.invalid_reason.is_(None), relationship.c.invalid_reason == ""
                    )
                )
                .where(concept.c.standard_concept == "S")
                .where(relationship.c.concept_id_1.in_(ids[start : start + _LOOKUP_CHUNK]))
                .order_by(relationship.c.concept_id_1, concept.c.concept_id.desc())
            ).all()
            for source, target, domain in rows:
                targets[int(source)] = (int(target), domain)
        return targets


def _chunks(pairs: set[tuple[str, str]]) -> Iterator[set[tuple[str, str]]]:
    ordered = sorted(pairs)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        yield set(ordered[start : start + _LOOKUP_CHUNK])
