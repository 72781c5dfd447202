"""The closed loop: UCI rows -> FHIR -> ETL -> OMOP -> heart spec = the CSV path's matrices."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from medfed.data.consent import Consents, consented_reader
from medfed.data.fhir import load_bundles
from medfed.data.heart_disease import HEART_HOSPITALS, heart_disease_centres
from medfed.data.omop.features import extract
from medfed.data.omop.spec import load_spec
from medfed.data.omop.store import OmopStore
from medfed.data.omop.vocabulary import install_builtin_vocabulary, load_vocabulary
from medfed.data.tabular import TabularDataset
from medfed.demo.ehr.bundles import HOSPITAL_FILES, hospital_rows, resource_id, write_heart_bundles
from medfed.demo.ehr.codes import HEART_SPEC, HEART_VOCABULARY

SPLITS = ("x_train", "y_train", "x_test", "y_test")
AT = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
FEATURE_COLUMNS = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang",
                   "oldpeak")  # fmt: skip


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_heart_bundles(tmp_path_factory.mktemp("fhir"))


def load_hospital(store: OmopStore, paths: list[Path]) -> None:
    install_builtin_vocabulary(store)
    load_vocabulary(store, HEART_VOCABULARY)
    report = load_bundles(store, paths)
    assert not report.refused


def assert_same(got: TabularDataset, want: TabularDataset) -> None:
    assert (got.features, got.label) == (want.features, want.label)
    for split in SPLITS:
        assert np.array_equal(getattr(got, split), getattr(want, split)), split


@pytest.mark.parametrize("hospital", sorted(HEART_HOSPITALS))
def test_fhir_to_omop_features_equal_the_csv_path(
    omop_store: OmopStore, bundles: dict[str, list[Path]], hospital: str
) -> None:
    load_hospital(omop_store, bundles[hospital])
    got = extract(omop_store.engine, load_spec(HEART_SPEC)).dataset
    assert_same(got, heart_disease_centres()[hospital])


def test_consent_all_equal_then_revocations_remove_rows(
    omop_store: OmopStore, bundles: dict[str, list[Path]]
) -> None:
    paths = bundles["switzerland"]
    load_hospital(omop_store, paths)
    spec = load_spec(HEART_SPEC)
    want = heart_disease_centres()["switzerland"]
    consents = Consents(omop_store)
    consents.create()
    consents.enable("heart")
    patients = [p.stem for p in paths]
    consents.grant("heart", patients, by="steward", at=AT)
    with consented_reader(omop_store, "heart") as reader:
        assert reader.consented_n == len(patients)
        assert_same(extract(reader.connection, spec).dataset, want)
    complete = [p for p in patients if p in _complete_patients("switzerland")]
    consents.revoke("heart", complete[:5] + [p for p in patients if p not in complete][:2],
                    by="steward", at=AT)  # fmt: skip
    with consented_reader(omop_store, "heart") as reader:
        assert reader.consented_n == len(patients) - 7
        fewer = extract(reader.connection, spec).dataset
    assert fewer.rows == want.rows - 5


def _complete_patients(hospital: str) -> set[str]:
    """Patient ids of the UCI rows with every feature present (the rows the CSV path keeps)."""
    number = list(HOSPITAL_FILES).index(hospital) + 1
    return {
        resource_id(number, line, "Patient")
        for line, row in hospital_rows(hospital)
        if all(row[c] != "?" for c in FEATURE_COLUMNS)
    }
