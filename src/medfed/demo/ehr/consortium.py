"""The heart consortium with EHR hospitals: what ``medfed demo --ehr`` and the e2e tests provision.

Each hospital's data steward loads its FHIR export into its own OMOP store, records consent for
the study (every patient but the ones withheld), registers the heart cohort/feature spec under
the study's dataset name and approves the study's plan: the node then trains on the consented
patients' feature matrix, which equals the CSV path's when everyone consents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medfed.coordinator.spec import StudySpec
from medfed.demo.consortium import Consortium
from medfed.demo.ehr.bundles import HOSPITAL_FILES, hospital_rows, resource_id
from medfed.demo.ehr.sites import PreparedSite, prepare_sites
from medfed.node.policy import LocalPolicy

CONSENT_STUDY = "heart-demo"
"""The consent study the demo's patients consent to (the steward's name for the protocol)."""


def patient_ids(site: str) -> list[str]:
    """The FHIR Patient ids of a heart hospital, in file order (= ``person_source_value``)."""
    number = list(HOSPITAL_FILES).index(site) + 1
    return [resource_id(number, line, "Patient") for line, _ in hospital_rows(site)]


def provision_ehr_nodes(
    consortium: Consortium,
    spec: StudySpec,
    *,
    consent_study: str = CONSENT_STUDY,
    withhold: Mapping[str, Sequence[str]] | None = None,
    postgres_url: str = "",
    schema_prefix: str = "heart",
) -> dict[str, PreparedSite]:
    """Prepare each heart hospital of ``consortium`` for ``spec`` from FHIR, as a steward would."""
    sites = {
        node: consortium.node_state(node)
        for node in consortium.node_configs
        if node in HOSPITAL_FILES
    }
    prepared = prepare_sites(
        consortium.root / "ehr",
        sites,
        dataset=spec.dataset,
        consent_study=consent_study,
        withhold=withhold,
        postgres_url=postgres_url,
        schema_prefix=schema_prefix,
    )
    for state in sites.values():
        LocalPolicy(state).approve(spec.plan, spec.plan_version)
    return prepared
