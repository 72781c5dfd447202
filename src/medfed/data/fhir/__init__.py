"""FHIR R4 -> OMOP CDM 5.4: the bundle loader and its data-quality report.

``load_bundles(store, paths)`` maps Patient, Encounter, Condition, Observation,
MedicationRequest, Immunization, Procedure, Organization and Practitioner resources into the
node's OMOP store (:mod:`medfed.data.fhir.mapping` says where each goes);
``quality_report(store)`` says how well the result is mapped.
"""

from medfed.data.fhir.loader import LoadedBundle, LoadReport, RefusedBundle, load_bundles
from medfed.data.fhir.quality import QualityReport, quality_report

__all__ = [
    "LoadReport",
    "LoadedBundle",
    "QualityReport",
    "RefusedBundle",
    "load_bundles",
    "quality_report",
]
