"""The heart study from EHR data over mTLS: FHIR R4 -> OMOP CDM -> consented feature matrix.

With every patient consenting, the study trains on exactly the CSV path's matrices, so its
rounds match the CSV study's; a revocation during the study shrinks the next reads, and each
round records the consented N and consent-log watermark every hospital read at.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medfed.data.consent import Consents
from medfed.data.heart_disease import HEART_HOSPITALS, heart_disease_centres
from medfed.data.omop.dataset import OmopLoad
from medfed.data.omop.store import open_store
from medfed.data.registry import DatasetRegistry
from medfed.demo.ehr.consortium import CONSENT_STUDY, patient_ids, provision_ehr_nodes
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.data.consent.conftest import drop_postgres
from tests.e2e.harness import HOSPITALS, Network, make_consortium, small_study
from tests.store.conftest import POSTGRES_URL, _check_postgres_reachable

EHR_DATASET = "heart_ehr"
REVOKED_AT = "cleveland"
REVOKED = 10


def _site_metrics(status: pb.StudyStatus, round_no: int) -> dict[str, pb.NodeMetrics]:
    summary = next(r for r in status.rounds if r.round == round_no)
    return {m.node: m for m in summary.train_per_node}


def _eval_accuracy(status: pb.StudyStatus) -> dict[str, float]:
    return {m.node: m.metrics["accuracy"] for m in status.rounds[-1].per_node}


def test_everyone_consenting_trains_exactly_what_the_csv_study_trains(network: Network) -> None:
    spec = small_study(rounds=4)
    ehr_spec = dataclasses.replace(spec, dataset=EHR_DATASET)
    prepared = provision_ehr_nodes(network.consortium, ehr_spec)
    network.start_coordinator()
    network.start_nodes()

    csv_status = network.wait_done(network.submit(spec), timeout_s=180)
    ehr_status = network.wait_done(network.submit(ehr_spec), timeout_s=180)

    assert csv_status.state == ehr_status.state == "completed", ehr_status.message
    centres = heart_disease_centres()
    for node in HOSPITALS:
        state = network.consortium.node_state(node)
        got = DatasetRegistry(state).load(EHR_DATASET)
        want = centres[node]
        for split in ("x_train", "y_train", "x_test", "y_test"):
            assert np.array_equal(getattr(got, split), getattr(want, split)), (node, split)
    for round_no in range(1, 5):
        trained = _site_metrics(ehr_status, round_no)
        baseline = _site_metrics(csv_status, round_no)
        assert {n: m.num_examples for n, m in trained.items()} == {
            n: m.num_examples for n, m in baseline.items()
        }
        assert {n: m.metrics["consented_n"] for n, m in trained.items()} == {
            n: float(len(prepared[n].patients)) for n in HOSPITALS
        }
    # same matrices, same seeds: the same model up to the order replies are folded in
    csv_model = network.admin.download(csv_status.model_sha256)
    ehr_model = network.admin.download(ehr_status.model_sha256)
    for name, value in csv_model.items():
        np.testing.assert_allclose(ehr_model[name], value, rtol=0, atol=1e-5)
    assert _eval_accuracy(ehr_status) == _eval_accuracy(csv_status)


@pytest.fixture
def postgres_prefix() -> Iterator[str]:
    _check_postgres_reachable()
    prefix = f"ehr_e2e_{uuid.uuid4().hex[:8]}"
    yield prefix
    for site in HEART_HOSPITALS:
        drop_postgres(f"{prefix}_{site}")


def test_a_revocation_during_the_study_shrinks_the_next_rounds_on_postgresql(
    tmp_path: Path, postgres_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cleveland's steward revokes 10 patients after the node's first read (round 1 trained
    on everyone); row-level security hides them from every later read."""
    network = Network(make_consortium(tmp_path))
    spec = dataclasses.replace(small_study(rounds=3), dataset=EHR_DATASET)
    prepared = provision_ehr_nodes(
        network.consortium, spec, postgres_url=POSTGRES_URL, schema_prefix=postgres_prefix
    )
    revoked = patient_ids(REVOKED_AT)[:REVOKED]
    cleveland = network.consortium.node_state(REVOKED_AT).resolve()
    reads: list[Path] = []
    real_load = DatasetRegistry.load_omop

    def load_then_revoke(self: DatasetRegistry, name: str, study_id: str = "") -> OmopLoad:
        loaded = real_load(self, name, study_id)
        if self._file.parent.resolve() == cleveland and not reads:
            reads.append(cleveland)
            store = open_store(POSTGRES_URL, prepared[REVOKED_AT].omop_schema)
            at = dt.datetime.now(dt.UTC)
            Consents(store).revoke(CONSENT_STUDY, revoked, by="steward", at=at, source="test")
            store.close()
        return loaded

    monkeypatch.setattr(DatasetRegistry, "load_omop", load_then_revoke)
    try:
        network.start_coordinator()
        network.start_nodes()
        status = network.wait_done(network.submit(spec), timeout_s=180)
    finally:
        network.close()

    assert status.state == "completed", status.message
    everyone = float(len(prepared[REVOKED_AT].patients))
    first, later = _site_metrics(status, 1), [_site_metrics(status, r) for r in (2, 3)]
    assert first[REVOKED_AT].metrics["consented_n"] == everyone
    for metrics in later:
        site = metrics[REVOKED_AT]
        assert site.metrics["consented_n"] == everyone - REVOKED
        assert site.metrics["consent_watermark"] > first[REVOKED_AT].metrics["consent_watermark"]
        assert site.num_examples < first[REVOKED_AT].num_examples
        for other in set(HOSPITALS) - {REVOKED_AT}:
            assert metrics[other].metrics["consented_n"] == first[other].metrics["consented_n"]
    assert status.rounds[1].metrics["consented_n"] == status.rounds[0].metrics["consented_n"] - 10
