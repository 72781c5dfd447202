"""The UCI Heart Disease hospitals as an EHR would hand them over: FHIR R4 -> OMOP -> features.

``bundles.write_heart_bundles`` writes the FHIR records; ``sites.prepare_sites`` loads each
hospital's into its own OMOP store and registers the heart spec as the node's dataset;
``codes.HEART_SPEC`` and ``codes.HEART_VOCABULARY`` are the spec and the local vocabulary it needs
(in ``data/builtin/heart_ehr``, shipped with the package data).
"""
