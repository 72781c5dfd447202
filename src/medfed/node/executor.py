"""Runs one task at the hospital, after the local policy has agreed to it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from medfed.data.registry import DatasetRegistry
from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError, MedfedError, PolicyError, TrainingError
from medfed.node.policy import LocalPolicy
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.plan import LocalTrainConfig, Optimizer, TrainingPlan
from medfed.training.registry import get_plan

log = logging.getLogger("medfed.node")


@dataclass(frozen=True)
class Outcome:
    num_examples: int
    metrics: dict[str, float]
    weights: tensors.Weights | None


class TaskExecutor:
    def __init__(self, datasets: DatasetRegistry, policy: LocalPolicy) -> None:
        self._datasets = datasets
        self._policy = policy

    def admit(self, task: pb.Task) -> tuple[TrainingPlan, TabularDataset]:
        """Check the task against local policy and data; PolicyError says why it is refused."""
        if task.kind not in (pb.TASK_KIND_TRAIN, pb.TASK_KIND_EVALUATE):
            raise PolicyError("unknown_task_kind", f"task kind {task.kind} is not supported")
        try:
            plan = get_plan(task.plan.name, task.plan.version)
        except TrainingError as exc:
            raise PolicyError("unknown_plan", str(exc)) from exc
        self._policy.check(task.plan.name, task.plan.version, task.plan.sha256)
        try:
            entry = self._datasets.get(task.dataset.name)
            data = self._datasets.load(task.dataset.name)
        except DatasetError as exc:
            raise PolicyError("dataset_unavailable", str(exc)) from exc
        wanted = tuple(task.dataset.features)
        if wanted and wanted != entry.features:
            raise PolicyError(
                "schema_mismatch",
                f"study expects features {list(wanted)}, dataset {entry.name!r} declares "
                f"{list(entry.features)}",
            )
        if task.dataset.label and task.dataset.label != entry.label:
            raise PolicyError(
                "schema_mismatch",
                f"study expects label {task.dataset.label!r}, dataset has {entry.label!r}",
            )
        return plan, data

    def run(
        self, task: pb.Task, plan: TrainingPlan, data: TabularDataset, weights: tensors.Weights
    ) -> Outcome:
        try:
            if task.kind == pb.TASK_KIND_EVALUATE:
                result = plan.evaluate(weights, data)
                return Outcome(result.num_examples, dict(result.metrics), None)
            trained = plan.train(weights, data, _local_config(task.config))
        except MedfedError:
            raise
        except (
            Exception
        ) as exc:  # plan code is the hospital's, but a crash in it must not kill the node
            log.exception("plan %s %s crashed", plan.name, plan.version)
            raise TrainingError(f"plan {plan.name} {plan.version} crashed: {exc!r}") from exc
        return Outcome(trained.num_examples, dict(trained.metrics), trained.weights)


def _local_config(config: pb.TrainConfig) -> LocalTrainConfig:
    optimizer: Optimizer = "adam" if config.optimizer == "adam" else "sgd"
    return LocalTrainConfig(
        epochs=config.local_epochs,
        steps=config.local_steps,
        batch_size=max(1, config.batch_size),
        optimizer=optimizer,
        learning_rate=config.learning_rate,
        proximal_mu=config.proximal_mu,
        seed=config.seed,
        options=dict(config.plan_options),
    )
