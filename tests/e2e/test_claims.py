"""What a hostile node claims about its replies (example counts, metrics), and what a hostile
submission carries, over real mTLS."""

from __future__ import annotations

import logging
import math
import threading
import time

import grpc
import numpy as np
import pytest

from medfed.coordinator.config import load_client_config
from medfed.coordinator.runner import StudyRunner
from medfed.coordinator.spec import spec_to_proto
from medfed.data.registry import DatasetRegistry, DatasetSizes
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.transport.grpc_factory import connect
from tests.e2e.harness import Network, passthrough_study
from tests.e2e.hostile import HONEST, HOSTILE, Hostile


def _train_rows(network: Network, node: str) -> int:
    return DatasetRegistry(network.consortium.node_state(node)).sizes()[0].train_rows


def _next(hostile: Hostile, kind: int) -> pb.Task:
    task = hostile.task()
    assert task.kind == kind, task
    return task


def test_evaluations_with_no_examples_or_accuracy_1e300_are_rejected(
    network: Network, hostile: Hostile
) -> None:
    study_id = network.submit(passthrough_study(rounds=2, eval_every=1, min_nodes=3))
    replies = []
    for claim in ((0, {"accuracy": 1.0}), (30, {"accuracy": 1e300, "loss": 0.1})):
        train = _next(hostile, pb.TASK_KIND_TRAIN)
        hostile.client.refuse(train, "busy", "this test only evaluates")
        replies.append(hostile.client.submit(_next(hostile, pb.TASK_KIND_EVALUATE), *claim, None))

    assert [r.accepted for r in replies] == [False, False]
    assert "at least one example" in replies[0].reason
    assert "accuracy=1e+300" in replies[1].reason
    status = network.wait_done(study_id, timeout_s=60)
    for summary in status.rounds:
        assert not any(k.startswith("accuracy") for k in summary.metrics), summary.metrics
        assert all(math.isfinite(v) for v in summary.metrics.values())
        assert {m.node for m in summary.per_node} == set(HONEST)
    recorded = [r for r in network.rejections(study_id) if r.startswith(f"{HOSTILE}: evaluation:")]
    assert len(recorded) == 2, recorded


def test_a_claim_beyond_the_announced_training_rows_is_rejected(
    network: Network, hostile: Hostile
) -> None:
    study_id = network.submit(passthrough_study(rounds=1, min_nodes=3))
    task = _next(hostile, pb.TASK_KIND_TRAIN)
    weights = hostile.model(task)

    reply = hostile.client.submit(task, 999_999_999, {}, {"w": weights["w"] + 1.0})

    assert not reply.accepted
    assert f"announced {_train_rows(network, HOSTILE)} train rows" in reply.reason
    hostile.refuse_evaluation()
    status = network.wait_done(study_id, timeout_s=60)
    assert status.rounds[0].accepted == 3
    assert np.allclose(network.admin.download(status.model_sha256)["w"], 0.001)


def test_max_site_weight_caps_a_site_that_announces_and_claims_a_billion(
    network: Network, hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    real = hostile.announce[0]
    assert isinstance(real, DatasetSizes)
    caplog.set_level(logging.WARNING, logger="medfed.coordinator")
    hostile.announce = [DatasetSizes(real.name, 999_999_999, real.test_rows)]
    _wait_announced(network, 999_999_999)
    study_id = network.submit(passthrough_study(rounds=1, min_nodes=4, max_site_weight=0.5))
    task = _next(hostile, pb.TASK_KIND_TRAIN)
    start = hostile.model(task)["w"]

    reply = hostile.client.submit(task, 999_999_999, {}, {"w": start + 1.0})

    assert reply.accepted, reply.reason
    hostile.refuse_evaluation()
    status = network.wait_done(study_id, timeout_s=60)
    assert status.rounds[0].metrics["max_site_share"] == pytest.approx(0.5)
    honest = sum(_train_rows(network, n) for n in HONEST)  # the cap: the hostile weighs as much
    expected = start + (0.001 * honest + 1.0 * honest) / (2 * honest)
    assert np.allclose(network.admin.download(status.model_sha256)["w"], expected, atol=1e-6)
    assert "changed its announced size of dataset 'heart_disease'" in caplog.text


def _wait_announced(network: Network, train_rows: int) -> None:
    for _ in range(100):
        sizes = [s.train_rows for n in network.admin.nodes() for s in n.dataset_sizes]
        if train_rows in sizes:
            return
        time.sleep(0.1)
    raise TimeoutError(f"no node announced {train_rows} training rows")


def _submit_raw(network: Network, manifest: pb.ModelManifest, data: bytes = b"") -> grpc.RpcError:
    cfg = load_client_config(network.consortium.admin_config)
    channel = connect(cfg.coordinator, cfg.tls, cfg.server_name)
    chunks = [
        pb.SubmitStudyChunk(spec=spec_to_proto(passthrough_study(rounds=1))),
        pb.SubmitStudyChunk(manifest=manifest),
        *([pb.SubmitStudyChunk(data=data)] if data else []),
    ]
    try:
        with pytest.raises(grpc.RpcError) as caught:
            rpc.AdminServiceStub(channel).SubmitStudy(iter(chunks), timeout=30)
    finally:
        channel.close()
    error: grpc.RpcError = caught.value
    return error


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        (
            {"w": np.zeros(3, np.float32), "__metadata__": np.zeros(1)},
            "reserved by the safetensors",
        ),
        ({"layer/w": np.zeros(3, np.float32)}, "'layer/w' contains '/'"),
        (None, "beyond int64"),
    ],
)
def test_a_submission_that_cannot_run_is_refused_with_its_reason(
    network: Network, weights: tensors.Weights | None, reason: str
) -> None:
    network.start_coordinator()
    if weights is None:  # [2^32, 2^32] float32 in 0 bytes: a size that wraps to 0 in int64
        huge = pb.TensorSpec(name="w", dtype=pb.DTYPE_FLOAT32, shape=[2**32, 2**32])
        error = _submit_raw(network, pb.ModelManifest(tensors=[huge], sha256="0" * 64))
    else:
        manifest, data = tensors.encode_model(weights)
        error = _submit_raw(network, manifest, b"".join(bytes(d) for d in data))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert reason in (error.details() or "")
    assert "Exception calling application" not in (error.details() or "")
    assert network.admin.studies() == []


def test_an_evaluation_cut_off_by_a_restart_runs_after_it(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached = threading.Event()

    def stopped_before_evaluating(runner: StudyRunner, *_: object) -> None:
        reached.set()
        runner._halt.wait(60)  # the coordinator stops here, right after the commit

    monkeypatch.setattr(StudyRunner, "_evaluate", stopped_before_evaluating)
    network.start_coordinator()
    network.start_nodes(HONEST)
    study_id = network.submit(passthrough_study(rounds=1, min_nodes=3))
    assert reached.wait(60)
    assert network.admin.status(study_id).completed_rounds == 1
    network.stop_coordinator()
    monkeypatch.undo()

    network.start_coordinator()
    status = network.wait_done(study_id, timeout_s=60)

    assert status.state == "completed", status.message
    assert {m.node for m in status.rounds[0].per_node} == set(HONEST)
    assert status.rounds[0].metrics["eval_participation"] == 1.0
