"""Provision the four UCI Heart Disease hospitals: each gets only its own centre's rows."""

from __future__ import annotations

import time
from pathlib import Path

from medfed.coordinator.spec import StudySpec, load_spec
from medfed.data.heart_disease import HEART_HOSPITALS, HEART_LABEL, export_heart_csvs
from medfed.data.registry import DatasetRegistry
from medfed.demo.consortium import Consortium
from medfed.node.policy import LocalPolicy
from medfed.training.plan import LocalTrainConfig

STUDY_SPEC = (
    Path(__file__).resolve().parent.parent / "data" / "builtin" / "heart_disease_study.toml"
)


def heart_study() -> StudySpec:
    return load_spec(STUDY_SPEC)


def provision_heart_nodes(consortium: Consortium, spec: StudySpec) -> None:
    """As each hospital's data steward would: register the local CSV, approve the study's plan."""
    exported = export_heart_csvs(consortium.root / "exported")
    for node in consortium.node_configs:
        if node not in HEART_HOSPITALS:
            continue
        state = consortium.node_state(node)
        local_csv = state.parent / "data" / f"{node}.csv"
        local_csv.parent.mkdir(parents=True, exist_ok=True)
        local_csv.write_bytes(exported[node].read_bytes())
        DatasetRegistry(state).add(
            spec.dataset,
            local_csv,
            label=HEART_LABEL,
            features=list(spec.features),
            split_column="split",
            now=time.time(),
        )
        LocalPolicy(state).approve(spec.plan, spec.plan_version)


def baseline_config(spec: StudySpec) -> LocalTrainConfig:
    """Baselines (pooled, each hospital alone) get the federation's compute: rounds x local work."""
    return LocalTrainConfig(
        epochs=spec.local_epochs * spec.rounds,
        steps=spec.local_steps * spec.rounds,
        batch_size=spec.batch_size,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        proximal_mu=0.0,
        seed=spec.seed,
        options=spec.plan_options,
    )
