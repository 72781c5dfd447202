from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from medfed.data.heart_disease import heart_disease_centres
from medfed.data.registry import DatasetRegistry
from medfed.demo.ehr.bundles import hospital_rows, resource_id
from medfed.demo.ehr.sites import prepare_sites
from tests.data.consent.conftest import drop_postgres
from tests.store.conftest import POSTGRES_URL, _check_postgres_reachable

FEATURES = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak")


def test_prepared_site_registers_the_heart_matrix_of_the_csv_path(tmp_path: Path) -> None:
    state = tmp_path / "switzerland" / "state"
    prepared = prepare_sites(tmp_path, {"switzerland": state})["switzerland"]
    want = heart_disease_centres()["switzerland"]
    assert (prepared.omop_store, len(prepared.patients), prepared.rows) == ("", 123, want.rows)
    assert (state / "omop.duckdb").exists()  # where a node config's default omop_store points
    got = DatasetRegistry(state).load("heart")
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(got, split), getattr(want, split))


def test_withheld_patients_are_not_read_on_postgresql(tmp_path: Path) -> None:
    _check_postgres_reachable()
    prefix = f"ehrsite_{uuid.uuid4().hex[:8]}"
    state = tmp_path / "switzerland" / "state"
    try:
        complete = [  # Switzerland is hospital 3; rows with no "?" stay in the matrix
            resource_id(3, line, "Patient")
            for line, row in hospital_rows("switzerland")
            if "?" not in [row[c] for c in FEATURES]
        ]
        withheld = tuple(complete[:4])
        prepared = prepare_sites(
            tmp_path,
            {"switzerland": state},
            consent_study="heart",
            withhold={"switzerland": withheld},
            postgres_url=POSTGRES_URL,
            schema_prefix=prefix,
        )["switzerland"]
        assert prepared.withheld == withheld
        loaded = DatasetRegistry(state).load_omop("heart")
        assert loaded.consented_n == 123 - 4
        assert loaded.extraction.dataset.rows == prepared.rows - 4  # registered: steward's view
    finally:
        drop_postgres(f"{prefix}_switzerland")
