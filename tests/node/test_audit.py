from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfed.coordinator.audit import AUDIT_METRICS
from medfed.data.tabular import TabularDataset
from medfed.errors import ConfigError, PolicyError
from medfed.node.audit import AuditResponder, AuditSettings, ParticipationLog, audit_model
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.plan import LocalTrainConfig
from medfed.training.registry import get_plan


def _task(study: str = "s-audit", audited: str = "s-trained") -> pb.Task:
    return pb.Task(
        task_id="t1",
        study_id=study,
        round=1,
        kind=pb.TASK_KIND_AUDIT,
        dataset=pb.DatasetRef(name="heart"),
        plan=pb.PlanRef(name="logistic_regression", version="1"),
        audit=pb.AuditQuery(study_id=audited),
    )


def _never_admitted(task: pb.Task) -> object:
    raise AssertionError("the plan must not be admitted for a study the node did not train in")


def test_a_study_the_node_did_not_train_in_is_refused(tmp_path: Path) -> None:
    responder = AuditResponder(None, _never_admitted, ParticipationLog(tmp_path))  # type: ignore[arg-type]

    with pytest.raises(PolicyError) as refused:
        responder.admit(_task())

    assert refused.value.code == "not_a_participant"
    assert "did not train in study 's-trained'" in str(refused.value)


def test_participation_is_kept_on_disk_and_checked_against_the_audit(tmp_path: Path) -> None:
    trained = pb.Task(study_id="s-trained", kind=pb.TASK_KIND_TRAIN,
                      dataset=pb.DatasetRef(name="other"),
                      plan=pb.PlanRef(name="logistic_regression", version="1"))  # fmt: skip
    ParticipationLog(tmp_path).record(trained)
    reopened = ParticipationLog(tmp_path)
    responder = AuditResponder(None, _never_admitted, reopened)  # type: ignore[arg-type]

    assert reopened.get("s-trained") is not None and reopened.get("s-other") is None
    with pytest.raises(PolicyError) as refused:
        responder.admit(_task())  # names dataset "heart"; the study trained on "other" here
    assert refused.value.code == "audit_mismatch"


def _memorising_data(seed: int = 0) -> TabularDataset:
    rng = np.random.default_rng(seed)
    d = 150
    x = rng.normal(size=(160, d)).astype(np.float32)
    y = (rng.random(160) < 0.5).astype(np.float32)  # noise labels: fitting them is memorising
    features = tuple(f"f{i}" for i in range(d))
    return TabularDataset(features, "y", x[:100], y[:100], x[100:], y[100:])


def test_audit_model_reports_aggregates_of_an_overfit_model() -> None:
    plan = get_plan("logistic_regression", "1")
    data = _memorising_data()
    config = LocalTrainConfig(epochs=50, steps=0, batch_size=100, optimizer="adam",
                              learning_rate=0.3)  # fmt: skip
    weights = plan.train(plan.init_weights(data.n_features, 0, {}), data, config).weights
    settings = AuditSettings(sample_size=40, reference_models=4, auc_threshold=0.55)

    metrics = audit_model(plan, weights, data, config, 1, settings, np.random.default_rng(0))

    assert set(metrics) <= AUDIT_METRICS
    assert metrics["members"] == metrics["non_members"] == 40
    assert metrics["reference_models"] == 4
    assert metrics["loss_auc"] > 0.7 and metrics["lira_auc"] > 0.7
    assert metrics["block_release"] == 1.0 and metrics["auc_threshold"] == 0.55


def test_images_get_the_loss_attack_only_and_no_flag_without_threshold() -> None:
    from medfed.data.images import ImageDataset

    rng = np.random.default_rng(1)
    x = rng.random((30, 1, 16, 16)).astype(np.float32)
    y = (np.arange(30) % 2).astype(np.float32)
    data = ImageDataset("y", x[:20], y[:20], x[20:], y[20:])
    plan = get_plan("cnn", "1")
    weights = plan.init_weights(1, 0, {"width": 8.0})
    config = LocalTrainConfig(epochs=1, steps=0, batch_size=8, optimizer="sgd", learning_rate=0.1)

    metrics = audit_model(plan, weights, data, config, 1, AuditSettings(), np.random.default_rng(0))

    assert "lira_auc" not in metrics and "loss_auc" in metrics
    assert metrics["members"] == metrics["non_members"] == 10
    assert metrics["block_release"] == 0.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        AuditSettings(auc_threshold=1.5)
    with pytest.raises(ConfigError):
        AuditSettings(sample_size=0)
