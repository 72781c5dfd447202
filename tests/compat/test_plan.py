"""The client-plan adapter: what a client returns is checked before it leaves the node, and the
examples' clients compute exactly what the installed logistic_regression plan computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medfed.compat.approval import ClientApprovals
from medfed.compat.layout import CLIENT_PLAN_VERSION
from medfed.compat.loader import load_client
from medfed.compat.plan import ClientPlan, ClientPlans, task_config
from medfed.data.heart_disease import (
    HEART_FEATURES,
    HEART_LABEL,
    export_heart_csvs,
    heart_disease_centres,
)
from medfed.data.registry import DatasetRegistry
from medfed.errors import ClientPlanError, PolicyError
from medfed.node.executor import TaskExecutor
from medfed.node.policy import LocalPolicy
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.plan import LocalTrainConfig
from medfed.training.plans.logistic_regression import LogisticRegressionPlan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flower"
LAYOUT = {"weight": np.zeros((1, 13), np.float32), "bias": np.zeros(1, np.float32)}
CONFIG = LocalTrainConfig(epochs=1, steps=0, batch_size=8, optimizer="sgd", learning_rate=0.1)


class Scripted:
    """A client whose fit returns whatever the test says."""

    def __init__(self, answer: object = None, error: BaseException | None = None) -> None:
        self.answer = answer
        self.error = error
        self.seen: list[dict[str, object]] = []

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]) -> object:
        self.seen.append(config)
        if self.error is not None:
            raise self.error
        return self.answer

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, object]) -> object:
        self.seen.append(config)
        return self.answer


def _train(answer: object = None, error: BaseException | None = None) -> object:
    plan = ClientPlan("heart", Scripted(answer, error), {"server_round": 2})
    return plan.train(dict(LAYOUT), heart_disease_centres()["cleveland"], CONFIG)


def _good() -> list[np.ndarray]:
    return [np.ones((1, 13), np.float32), np.ones(1, np.float32)]


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        ((_good()[:1], 5, {}), None, r"returned 1 arrays; .* has 2 \(weight, bias\)"),
        (([np.ones((13, 1)), np.ones(1)], 5, {}), None, r"shape \(13, 1\) for 'weight'"),
        (([np.full((1, 13), np.nan), np.ones(1)], 5, {}), None, "NaN or infinity in 'weight'"),
        (([np.ones((1, 13)), np.ones(1, np.complex64)], 5, {}), None, "does not cast"),
        ((_good(), 0, {}), None, "num_examples must be a positive integer"),
        ((_good(), 5.0, {}), None, "num_examples must be a positive integer"),
        ((_good(), 5, {"auc": float("inf")}), None, "metric 'auc' is inf"),
        ((_good(), 5), None, r"must return \(parameters, num_examples, metrics\)"),
        (None, ValueError("out of memory"), r"fit raised ValueError\('out of memory'\)"),
        (None, SystemExit(3), r"fit raised SystemExit\(3\)"),
    ],
    ids=["count", "shape", "nan", "dtype", "zero-examples", "float-examples", "inf-metric",
         "two-values", "raises", "exits"],
)  # fmt: skip
def test_a_bad_answer_is_refused_with_the_reason(
    answer: object, error: BaseException | None, reason: str
) -> None:
    with pytest.raises(ClientPlanError, match=reason):
        _train(answer, error)


def test_a_good_answer_is_cast_to_the_layout_and_its_numeric_metrics_kept() -> None:
    result = _train(([np.ones((1, 13)), [2.0]], np.int64(7), {"auc": 0.5, "note": "x"}))
    assert result.weights["weight"].dtype == np.float32  # type: ignore[attr-defined]
    assert result.weights["bias"].tolist() == [2.0]  # type: ignore[attr-defined]
    assert result.num_examples == 7  # type: ignore[attr-defined]
    assert result.metrics == {"auc": 0.5}  # type: ignore[attr-defined]


def test_evaluate_reports_the_loss_and_metrics() -> None:
    client = Scripted((0.25, 9, {"accuracy": 0.75}))
    plan = ClientPlan("heart", client, {"server_round": 3, "mode": 1.0})
    result = plan.evaluate(dict(LAYOUT), heart_disease_centres()["cleveland"])
    assert (result.num_examples, result.metrics) == (9, {"loss": 0.25, "accuracy": 0.75})
    assert client.seen == [{"server_round": 3, "mode": 1.0}]


def test_the_study_config_reaches_fit() -> None:
    task = pb.Task(
        round=4,
        config=pb.TrainConfig(
            local_epochs=2, batch_size=16, learning_rate=0.5, seed=11, total_rounds=9,
            proximal_mu=0.1, plan_options={"mode": 3.0},
        ),
    )  # fmt: skip
    config = task_config(task)
    assert config["server_round"] == 4 and config["mode"] == 3.0 and config["proximal_mu"] == 0.1
    client = Scripted((_good(), 5, {}))
    ClientPlan("heart", client, config).train(
        dict(LAYOUT), heart_disease_centres()["cleveland"], CONFIG
    )
    seen = client.seen[0]
    assert (seen["server_round"], seen["total_rounds"], seen["mode"]) == (4, 9, 3.0)
    assert (seen["batch_size"], seen["learning_rate"], seen["local_epochs"]) == (8, 0.1, 1)


@pytest.mark.parametrize(
    ("example", "batch_size"),
    [("heart_torch_client.py", 8), ("heart_numpy_client.py", 4096)],
)
def test_the_example_clients_do_the_logistic_regression_plans_math(
    tmp_path: Path, example: str, batch_size: int
) -> None:
    """The NumPy client matches with full batches only: its minibatch order is NumPy's."""
    csvs = export_heart_csvs(tmp_path / "csv")
    plan = LogisticRegressionPlan()
    init = plan.init_weights(13, 0, {})
    config = LocalTrainConfig(
        epochs=2, steps=0, batch_size=batch_size, optimizer="sgd", learning_rate=0.1, seed=5
    )
    for site, data in heart_disease_centres().items():
        folder = tmp_path / site
        folder.mkdir()
        shutil.copyfile(csvs[site], folder / "local.csv")
        script = folder / example
        shutil.copyfile(EXAMPLES / example, script)
        client = ClientPlan("heart", load_client(script.read_bytes(), script), {})
        ours, theirs = plan.train(init, data, config), client.train(init, data, config)
        assert theirs.num_examples == ours.num_examples
        for key in init:
            np.testing.assert_allclose(theirs.weights[key], ours.weights[key], atol=1e-6)
        assert not np.allclose(ours.weights["weight"], init["weight"])
        mine = client.evaluate(ours.weights, data).metrics
        np.testing.assert_allclose(
            mine["loss"], plan.evaluate(ours.weights, data).metrics["loss"], rtol=1e-5
        )


def _executor(tmp_path: Path, body: str) -> TaskExecutor:
    csv = export_heart_csvs(tmp_path / "csv")["cleveland"]
    state = tmp_path / "state"
    registry = DatasetRegistry(state)
    registry.add("heart", csv, label=HEART_LABEL, split_column="split", now=0.0)
    script = tmp_path / "client.py"
    script.write_text(body)
    ClientApprovals(state).approve(script, "heart")
    return TaskExecutor(registry, LocalPolicy(state), clients=ClientPlans(state))


def _task(name: str = "heart", **config: object) -> pb.Task:
    return pb.Task(
        task_id="t",
        round=1,
        kind=pb.TASK_KIND_TRAIN,
        dataset=pb.DatasetRef(name="heart", features=list(HEART_FEATURES), label=HEART_LABEL),
        plan=pb.PlanRef(name=name, version=CLIENT_PLAN_VERSION),
        config=pb.TrainConfig(local_epochs=1, batch_size=8, learning_rate=0.1, **config),  # type: ignore[arg-type]
    )


RAISING = (
    "class C:\n"
    "    def fit(self, parameters, config):\n"
    "        raise RuntimeError('disk full')\n"
    "    def evaluate(self, parameters, config):\n"
    "        return 0.0, 1, {}\n"
)


@pytest.mark.parametrize(
    ("task", "code", "reason"),
    [
        (_task("other"), "plan_not_approved", "approve-client"),
        (_task(record_dp=pb.RecordDp(epsilon=1.0)), "unsupported_settings", "record-level DP"),
        (_task(algorithm="scaffold"), "unsupported_settings", "SCAFFOLD"),
    ],
    ids=["unapproved", "record-dp", "scaffold"],
)
def test_the_executor_refuses_what_a_client_plan_cannot_do(
    tmp_path: Path, task: pb.Task, code: str, reason: str
) -> None:
    executor = _executor(tmp_path, RAISING)
    with pytest.raises(PolicyError, match=reason) as caught:
        executor.admit(task)
    assert caught.value.code == code


def test_a_client_that_raises_fails_its_task_and_the_executor_serves_on(tmp_path: Path) -> None:
    executor = _executor(tmp_path, RAISING)
    plan, data = executor.admit(_task())
    with pytest.raises(ClientPlanError, match="disk full"):
        executor.run(_task(), plan, data, dict(LAYOUT))
    (tmp_path / "client.py").write_text(RAISING + "\n")
    with pytest.raises(PolicyError, match="changed since it was approved"):
        executor.admit(_task())
