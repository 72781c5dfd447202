"""Runs one task at the hospital, after the local policy has agreed to it."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from medfed.compat.layout import CLIENT_PLAN_VERSION
from medfed.compat.plan import ClientPlans
from medfed.compression.codec import Compression, CompressionConfig
from medfed.data.dataset import Dataset
from medfed.data.registry import DatasetEntry, DatasetRegistry
from medfed.data.schema import schema_diff
from medfed.data.tabular import TabularDataset
from medfed.errors import DatasetError, MedfedError, PolicyError, TrainingError
from medfed.node.client_state import FileClientState
from medfed.node.policy import LocalPolicy, check_cohort
from medfed.privacy.accounting import Accountant
from medfed.privacy.ledger import PrivacyLedger
from medfed.privacy.record_level import RecordDpRequest, plan_record_dp
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.local_update import (
    Algorithm,
    ClientSettings,
    MemoryClientState,
    Personalization,
    RoundView,
    VersionedState,
    local_evaluate,
    local_update,
)
from medfed.training.plan import DpSgdConfig, LocalTrainConfig, Optimizer, TrainingPlan
from medfed.training.registry import get_plan
from medfed.training.score_histogram import ScoreHistogram

log = logging.getLogger("medfed.node")
NOT_PRIVATE = frozenset({"train_loss", "initial_loss"})
"""Training metrics withheld under record-level DP (the DP guarantee covers the model only)."""


@dataclass(frozen=True)
class Outcome:
    """``histogram``: an evaluation's score bin counts (pooled metrics at the coordinator)."""

    num_examples: int
    metrics: dict[str, float]
    weights: tensors.Weights | None
    histogram: ScoreHistogram | None = None


class TaskExecutor:
    def __init__(
        self,
        datasets: DatasetRegistry,
        policy: LocalPolicy,
        state_root: Path | None = None,
        ledger: PrivacyLedger | None = None,
        wall: Callable[[], float] = time.time,
        clients: ClientPlans | None = None,
    ) -> None:
        """``state_root``: where per-study site state lives (in memory when None); ``ledger``:
        this hospital's privacy budgets (a study asking for DP-SGD is refused without one);
        ``clients``: the hospital's own approved client files (``medfed.compat``), if any."""
        self._datasets = datasets
        self._policy = policy
        self._state_root = state_root
        self._ledger = ledger
        self._wall = wall
        self._clients = clients
        self._memory: dict[str, MemoryClientState] = {}

    def admit(self, task: pb.Task) -> tuple[TrainingPlan, Dataset]:
        """Check the task against local policy and data; PolicyError says why it is refused."""
        if task.kind not in (pb.TASK_KIND_TRAIN, pb.TASK_KIND_EVALUATE):
            raise PolicyError("unknown_task_kind", f"task kind {task.kind} is not supported")
        plan = self.admit_stage(task)
        try:
            entry = self._datasets.get(task.dataset.name)
            check_cohort(entry, task.dataset.cohort_sha256)
            data = self._load(entry)
        except DatasetError as exc:
            raise PolicyError("dataset_unavailable", str(exc)) from exc
        wanted = tuple(task.dataset.features)
        if wanted and wanted != entry.features:
            diff = schema_diff(wanted, entry.features).describe()
            raise PolicyError(
                "schema_mismatch",
                f"dataset {entry.name!r} does not match the study's features: {diff}",
            )
        if task.dataset.label and task.dataset.label != entry.label:
            raise PolicyError(
                "schema_mismatch",
                f"study expects label {task.dataset.label!r}, dataset has {entry.label!r}",
            )
        client_settings(task.config)  # refuse settings this node cannot honour before training
        return plan, data

    def _load(self, entry: DatasetEntry) -> Dataset:
        """The task's dataset; an OMOP one is read through its consent study, and carries the
        consented N and consent-log watermark it was read at, for the reply."""
        if entry.kind != "omop":
            return self._datasets.load(entry.name)
        loaded = self._datasets.load_omop(entry.name)
        if loaded.consented_n is None:
            return loaded.extraction.dataset
        read_state = {
            "consented_n": float(loaded.consented_n),
            "consent_watermark": float(loaded.watermark or 0),
        }
        return dataclasses.replace(loaded.extraction.dataset, read_state=read_state)

    def admit_stage(self, task: pb.Task) -> TrainingPlan:
        """The checks a secure-aggregation stage needs (approved plan, registered dataset),
        without reading the data: a stage moves keys and shares, never patient rows."""
        if task.plan.version == CLIENT_PLAN_VERSION:  # the hospital's own code (medfed.compat)
            if self._clients is None:
                raise PolicyError("plan_not_approved", "this node runs no client plans")
            return self._admit_dataset(task, self._clients.admit(task))
        try:
            plan = get_plan(task.plan.name, task.plan.version)
        except TrainingError as exc:
            raise PolicyError("unknown_plan", str(exc)) from exc
        self._policy.check(task.plan.name, task.plan.version, task.plan.sha256)
        return self._admit_dataset(task, plan)

    def _admit_dataset(self, task: pb.Task, plan: TrainingPlan) -> TrainingPlan:
        if task.kind == pb.TASK_KIND_SECAGG:
            try:
                self._datasets.get(task.dataset.name)
            except DatasetError as exc:
                raise PolicyError("dataset_unavailable", str(exc)) from exc
        return plan

    def run(
        self, task: pb.Task, plan: TrainingPlan, data: Dataset, weights: tensors.Weights
    ) -> Outcome:
        config = local_config(task.config)
        settings = client_settings(task.config)
        versions = self._state(task.study_id)
        try:
            if task.kind == pb.TASK_KIND_EVALUATE:  # after round r is committed: r's state
                state = RoundView(versions, task.round + 1)
                result = local_evaluate(plan, data, weights, config, settings, state)
                return Outcome(result.num_examples, dict(result.metrics), None, result.histogram)
            rng = np.random.default_rng([config.seed, task.round])
            config, privacy = self._spend_privacy(task, data, config)
            state = RoundView(versions, task.round)
            update = local_update(plan, data, weights, config, settings, state, rng)
        except MedfedError:
            raise
        except (
            Exception
        ) as exc:  # plan code is the hospital's, but a crash in it must not kill the node
            log.exception("plan %s %s crashed", plan.name, plan.version)
            raise TrainingError(f"plan {plan.name} {plan.version} crashed: {exc!r}") from exc
        metrics = update.metrics | privacy
        if privacy:  # exact training losses are functions of every row: not covered by DP
            metrics = {k: v for k, v in metrics.items() if k not in NOT_PRIVATE}
        read_state = data.read_state if isinstance(data, TabularDataset) else {}
        return Outcome(update.num_examples, metrics | dict(read_state), update.wire)

    def _spend_privacy(
        self, task: pb.Task, data: Dataset, config: LocalTrainConfig
    ) -> tuple[LocalTrainConfig, dict[str, float]]:
        """Derive this site's DP-SGD noise, and book the round's steps in the ledger *before*
        training: a round that would exceed the data steward's budget never touches the data."""
        request = record_dp_request(task.config)
        if not request.enabled:
            return config, {}
        if self._ledger is None:
            raise PolicyError("privacy_budget_missing", "this node keeps no privacy ledger")
        dp = plan_record_dp(
            request, len(data.y_train), config.batch_size, config.steps, config.epochs,
            task.config.total_rounds,
        )  # fmt: skip
        dataset = task.dataset.name
        spend = self._ledger.consume(  # epsilon of the booked total, inside the transaction
            dataset, task.study_id, dp.steps_per_round, dp.epsilon_after, dp.noise_multiplier,
            dp.sample_rate, dp.delta, dp.accountant, now=self._wall(),
        )  # fmt: skip
        epsilon = spend.epsilon
        budget = self._ledger.budget(dataset)
        left = budget.epsilon - self._ledger.spent(dataset) if budget else 0.0
        log.info("study %s: epsilon %.4f spent on %s (%.4f left)", task.study_id, epsilon,
                 dataset, left)  # fmt: skip
        metrics = {"epsilon": epsilon, "epsilon_budget_left": left, "delta": dp.delta}
        return dataclasses.replace(
            config, dp=DpSgdConfig(dp.noise_multiplier, dp.max_grad_norm)
        ), metrics

    def _state(self, study_id: str) -> VersionedState:
        if self._state_root is not None:
            return FileClientState(self._state_root, study_id)
        return self._memory.setdefault(study_id, MemoryClientState())


def record_dp_request(config: pb.TrainConfig) -> RecordDpRequest:
    dp = config.record_dp
    return RecordDpRequest(
        epsilon=dp.epsilon,
        delta=dp.delta or 1e-5,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm or 1.0,
        accountant=cast(Accountant, dp.accountant or "rdp"),
    )


def client_settings(config: pb.TrainConfig) -> ClientSettings:
    """The study's update settings from a task; invalid values are refused with the reason."""
    try:
        compression = CompressionConfig(
            kind=cast(Compression, config.compression or "none"),
            topk_ratio=config.topk_ratio or 0.01,
            error_feedback=config.error_feedback,
        )
        return ClientSettings(
            algorithm=cast(Algorithm, config.algorithm or "default"),
            personalization=cast(Personalization, config.personalization or "none"),
            compression=compression,
            finetune_steps=config.finetune_steps,
            clip_norm=config.clip_norm,
            noise_std=config.noise_std,
        )
    except MedfedError as exc:
        raise PolicyError("unsupported_settings", str(exc)) from exc


def local_config(config: pb.TrainConfig) -> LocalTrainConfig:
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
