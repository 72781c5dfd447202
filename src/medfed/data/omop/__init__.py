"""OMOP CDM 5.4 at the hospital: the store, its vocabulary, cohorts and features."""
