"""The ETL tests run on both OMOP stores: the ``omop_store`` fixture of tests/data/omop."""

from tests.data.omop.conftest import omop_store  # noqa: F401  (a fixture, used by name)
