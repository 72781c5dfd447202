from __future__ import annotations

from pathlib import Path

import pytest

from medfed.data.heart_disease import HEART_FEATURES, HEART_LABEL, export_heart_csvs
from medfed.data.registry import DatasetRegistry
from medfed.errors import PolicyError, TrainingError
from medfed.node.executor import TaskExecutor
from medfed.node.policy import LocalPolicy
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.registry import get_plan, plan_sha256


@pytest.fixture
def executor(tmp_path: Path) -> TaskExecutor:
    csv = export_heart_csvs(tmp_path / "csv")["cleveland"]
    registry = DatasetRegistry(tmp_path / "state")
    registry.add("heart", csv, label=HEART_LABEL, split_column="split", now=0.0)
    policy = LocalPolicy(tmp_path / "state")
    policy.approve("logistic_regression", "1")
    return TaskExecutor(registry, policy)


def _task(**changes: object) -> pb.Task:
    task = pb.Task(
        task_id="t",
        kind=pb.TASK_KIND_TRAIN,
        dataset=pb.DatasetRef(name="heart", features=list(HEART_FEATURES), label=HEART_LABEL),
        plan=pb.PlanRef(name="logistic_regression", version="1"),
    )
    for key, value in changes.items():
        getattr(task, key).CopyFrom(value)
    return task


def test_an_approved_task_is_admitted(executor: TaskExecutor) -> None:
    plan, data = executor.admit(_task())

    assert plan.name == "logistic_regression"
    assert data.features == HEART_FEATURES


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"plan": pb.PlanRef(name="mlp", version="1")}, "plan_not_approved"),
        ({"plan": pb.PlanRef(name="resnet", version="9")}, "unknown_plan"),
        ({"dataset": pb.DatasetRef(name="nope")}, "dataset_unavailable"),
        ({"dataset": pb.DatasetRef(name="heart", features=["age"])}, "schema_mismatch"),
        ({"dataset": pb.DatasetRef(name="heart", label="other")}, "schema_mismatch"),
        ({"config": pb.TrainConfig(compression="zip")}, "unsupported_settings"),
        ({"config": pb.TrainConfig(algorithm="fedmagic")}, "unsupported_settings"),
        ({"config": pb.TrainConfig(compression="topk", topk_ratio=2.0)}, "unsupported_settings"),
        (
            {"plan": pb.PlanRef(name="logistic_regression", version="1", sha256="0" * 64)},
            "plan_hash_mismatch",
        ),
    ],
)
def test_refusals_carry_a_code_and_a_reason(
    executor: TaskExecutor, changes: dict[str, object], code: str
) -> None:
    with pytest.raises(PolicyError) as info:
        executor.admit(_task(**changes))

    assert info.value.code == code
    assert str(info.value)


def test_the_exact_installed_plan_hash_is_accepted(executor: TaskExecutor) -> None:
    sha = plan_sha256(get_plan("logistic_regression", "1"))

    executor.admit(_task(plan=pb.PlanRef(name="logistic_regression", version="1", sha256=sha)))


def test_a_crashing_plan_becomes_a_training_error(
    executor: TaskExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, data = executor.admit(_task())

    def explode(*args: object) -> None:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(plan, "train", explode)
    with pytest.raises(TrainingError, match="crashed: RuntimeError\\('CUDA out of memory'\\)"):
        task = _task(
            config=pb.TrainConfig(local_epochs=1, batch_size=8, optimizer="sgd", learning_rate=0.1)
        )
        executor.run(task, plan, data, {})


def test_a_schema_mismatch_names_the_differing_columns_not_the_whole_list(
    executor: TaskExecutor,
) -> None:
    wanted = [*[f for f in HEART_FEATURES if f != "chol"][::-1], "bmi"]

    with pytest.raises(PolicyError) as info:
        executor.admit(_task(dataset=pb.DatasetRef(name="heart", features=wanted)))

    message = str(info.value)
    assert "missing 1: 'bmi'" in message
    assert "extra 1: 'chol'" in message
    assert "reordered" in message and f"'{HEART_FEATURES[0]}' (study #" in message
