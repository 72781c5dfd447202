"""A privacy audit at the hospital: how well does membership inference work on the released model?

The node answers a TASK_KIND_AUDIT task only for a study it trained in (its own participation
log says so, not the coordinator), with a plan its data steward approved and the dataset it
trained on. It scores the study's final model on a random sample of its training rows (members)
and an equal sample of its held-out rows (non-members) and runs the attacks of
``medfed.privacy.attacks.membership``:

* the loss attack (Yeom et al. 2018), always;
* when reference models are cheap (a table, not images, and a bounded amount of training):
  ``reference_models`` models of the same plan and local recipe, trained here on random halves of
  the training rows *not* in the audited sample, giving offline LiRA (Carlini et al. 2022) and the
  difficulty-calibrated loss attack (Watson et al. 2022).

Only aggregates leave: each attack's AUC and TPR at 1 % FPR, the two sample sizes, and the
site's release flag (its AUC above the node's ``audit_auc_threshold``). No score, loss or index
of any row is ever part of the reply; the coordinator refuses any other metric name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfed.data.dataset import Dataset
from medfed.data.images import ImageDataset
from medfed.data.registry import DatasetRegistry
from medfed.errors import AttackError, ConfigError, DatasetError, MedfedError, PolicyError
from medfed.node.executor import local_config
from medfed.node.policy import check_cohort
from medfed.node.stats import with_pooled_standardization
from medfed.privacy.attacks import membership as mi
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.plan import LocalTrainConfig, TrainingPlan

DEFAULT_SAMPLE = 200
"""Rows per side (training, held-out) when the task does not ask for fewer."""
MAX_SAMPLE = 5000
REFERENCE_MODELS = 4
MAX_REFERENCE_ROW_PASSES = 2_000_000
"""Reference models are trained only if their rows x passes, summed, stay below this."""
_STUDY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class AuditSettings:
    """The data steward's audit settings (node config ``[audit]``-style keys)."""

    sample_size: int = DEFAULT_SAMPLE
    reference_models: int = REFERENCE_MODELS
    auc_threshold: float = 0.0
    """> 0: ask that release be blocked when any attack's AUC exceeds it; the coordinator then
    withholds the model until the council overrules the request or a later audit of this node
    no longer asks (medfed.governance.release)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.auc_threshold <= 1.0:
            raise ConfigError(f"audit_auc_threshold must be in [0, 1], got {self.auc_threshold}")
        if self.sample_size < 1:
            raise ConfigError(f"audit_sample_size must be at least 1, got {self.sample_size}")


@dataclass(frozen=True)
class Participation:
    study_id: str
    dataset: str
    plan: str
    plan_version: str


class ParticipationLog:
    """The studies this node trained in, one small JSON file each (in memory without a root).

    Written when a training reply is accepted, so a node refuses to audit (and so to spend
    patient rows on) a study it never gave anything to."""

    def __init__(self, root: Path | None) -> None:
        self._root = root / "audit" if root is not None else None
        self._memory: dict[str, Participation] = {}
        self._lock = threading.Lock()

    def record(self, task: pb.Task) -> None:
        if not _STUDY_ID.match(task.study_id):
            return
        entry = Participation(task.study_id, task.dataset.name, task.plan.name, task.plan.version)
        with self._lock:
            self._memory[task.study_id] = entry
            if self._root is None:
                return
            self._root.mkdir(parents=True, exist_ok=True)
            path = self._root / f"trained-{task.study_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(dataclasses.asdict(entry), sort_keys=True))
            os.replace(tmp, path)

    def get(self, study_id: str) -> Participation | None:
        with self._lock:
            if study_id in self._memory or self._root is None or not _STUDY_ID.match(study_id):
                return self._memory.get(study_id)
            path = self._root / f"trained-{study_id}.json"
            if not path.exists():
                return None
            doc = json.loads(path.read_text())
            return Participation(**{k: str(doc[k]) for k in Participation.__annotations__})


class AuditResponder:
    """Answers audit tasks: admits them (participation, plan, dataset), then ``audit_model``."""

    def __init__(
        self,
        datasets: DatasetRegistry,
        admit_plan: Callable[[pb.Task], TrainingPlan],
        participation: ParticipationLog,
        settings: AuditSettings | None = None,
    ) -> None:
        self._datasets = datasets
        self._admit_plan = admit_plan
        self.participation = participation
        self._settings = settings or AuditSettings()

    def admit(self, task: pb.Task) -> tuple[TrainingPlan, Dataset]:
        """The plan and data to audit with; PolicyError (with a code) says why not."""
        target = task.audit.study_id
        took_part = self.participation.get(target)
        if took_part is None:
            raise PolicyError(
                "not_a_participant",
                f"this node did not train in study {target!r}, so it has no training rows of "
                "that model to audit; it audits only studies it took part in",
            )
        if (took_part.dataset, took_part.plan) != (task.dataset.name, task.plan.name):
            raise PolicyError(
                "audit_mismatch",
                f"study {target!r} trained plan {took_part.plan!r} on dataset "
                f"{took_part.dataset!r} here; the audit names {task.plan.name!r} on "
                f"{task.dataset.name!r}",
            )
        plan = self._admit_plan(task)
        try:
            entry = self._datasets.get(task.dataset.name)
            check_cohort(entry, task.dataset.cohort_sha256)
            if entry.kind == "omop":  # through the consent study, exactly as training read it
                data: Dataset = self._datasets.load_omop(entry.name).extraction.dataset
            else:
                data = self._datasets.load(entry.name)
        except DatasetError as exc:
            raise PolicyError("dataset_unavailable", str(exc)) from exc
        return plan, with_pooled_standardization(task, data)

    def answer(
        self, task: pb.Task, plan: TrainingPlan, data: Dataset, weights: tensors.Weights
    ) -> tuple[int, dict[str, float]]:
        """(rows scored, aggregate metrics) for an admitted task (``admit``) and the model."""
        size = min(task.audit.sample_size or self._settings.sample_size, MAX_SAMPLE)
        settings = dataclasses.replace(self._settings, sample_size=size)
        config = local_config(task.config)
        rng = np.random.default_rng()  # the sample is the node's secret, as its rows are
        try:
            metrics = audit_model(plan, weights, data, config, task.config.total_rounds,
                                  settings, rng)  # fmt: skip
        except AttackError as exc:
            raise PolicyError("audit_impossible", str(exc)) from exc
        except MedfedError:
            raise
        except Exception as exc:  # plan code is the hospital's; a crash refuses, never hangs
            raise PolicyError("audit_failed", f"the audit crashed: {exc!r}") from exc
        return int(metrics["members"] + metrics["non_members"]), metrics


def audit_model(
    plan: TrainingPlan,
    weights: tensors.Weights,
    data: Dataset,
    config: LocalTrainConfig,
    rounds: int,
    settings: AuditSettings,
    rng: np.random.Generator,
) -> dict[str, float]:
    """The audit's aggregate numbers for ``weights`` on ``data`` (see the module docstring)."""
    members, others = mi.audit_sample(
        len(data.y_train), len(data.y_test), settings.sample_size, rng
    )
    x = np.concatenate([data.x_train[members], data.x_test[others]])
    y = np.concatenate([data.y_train[members], data.y_test[others]])
    is_member = np.r_[np.ones(len(members)), np.zeros(len(others))]
    logits = plan.predict(weights, dataclasses.replace(data, x_test=x, y_test=y))
    out = _summary("loss", mi.loss_attack_scores(logits, y), is_member)
    references = _reference_logits(plan, data, members, x, y, config, rounds, settings, rng)
    if references is not None:
        out |= _summary("lira", mi.lira_offline_scores(logits, y, references), is_member)
        out |= _summary("calibrated", mi.loss_attack_scores(logits, y, references), is_member)
        out["reference_models"] = float(len(references))
    out["members"], out["non_members"] = float(len(members)), float(len(others))
    out["low_fpr"] = mi.LOW_FPR
    highest = max(v for k, v in out.items() if k.endswith("_auc"))
    out["auc_threshold"] = settings.auc_threshold
    out["block_release"] = float(0 < settings.auc_threshold < highest)
    return out


def _summary(attack: str, scores: np.ndarray, is_member: np.ndarray) -> dict[str, float]:
    summary = mi.summarize_attack(scores, is_member)
    return {f"{attack}_auc": summary.auc, f"{attack}_tpr_at_low_fpr": summary.tpr_at_low_fpr}


def _reference_logits(
    plan: TrainingPlan,
    data: Dataset,
    members: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    config: LocalTrainConfig,
    rounds: int,
    settings: AuditSettings,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """Logits of the audited rows under reference models that trained on none of them (each on
    a random half of the remaining training rows, with the study's plan and local recipe for
    its number of rounds), or None when that is not cheap here."""
    if settings.reference_models < 2 or isinstance(data, ImageDataset):
        return None
    pool = np.setdiff1d(np.arange(len(data.y_train)), members)
    rounds = max(1, rounds)
    steps_as_passes = -(-config.steps * config.batch_size // max(1, len(pool) // 2))
    passes = rounds * (config.epochs or steps_as_passes)
    if len(pool) < 4 or settings.reference_models * passes * len(pool) > MAX_REFERENCE_ROW_PASSES:
        return None
    out = []
    for i, subset in enumerate(mi.reference_subsets(len(pool), settings.reference_models, rng)):
        rows = pool[subset]
        if len(np.unique(data.y_train[rows])) < 2:
            continue
        local = dataclasses.replace(data, x_train=data.x_train[rows], y_train=data.y_train[rows],
                                    x_test=x, y_test=y)  # fmt: skip
        seed = int(rng.integers(1 << 31))
        model = plan.init_weights(data.n_features, seed, config.options)
        for r in range(rounds):
            model = plan.train(model, local, dataclasses.replace(config, seed=seed + r + i)).weights
        out.append(plan.predict(model, local))
    return np.stack(out) if len(out) >= 2 else None
