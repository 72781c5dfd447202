"""Membership inference against medfed's released models, with and without record-level DP.

What a privacy audit (``medfed study audit``) measures at each hospital, here for whole studies
run in one process (``medfed.simulation.simulate``: the node's own update code). After the last
round each site runs ``medfed.node.audit.audit_model`` -- the exact function a node runs for an
audit -- on the final model: a random sample of its training rows (members) against an equal
sample of its held-out rows (non-members), at most ``--sample`` each.

* Attacks: the loss attack (Yeom et al. 2018) everywhere; on the heart tables also offline LiRA
  (Carlini et al. 2022) and the difficulty-calibrated loss attack (Watson et al. 2022) with 4
  reference models per site trained locally on halves of the remaining training rows.
* Studies: the heart demo study (``heart_disease_study.toml``: 4 UCI hospitals, FedAvg, logistic
  regression, 20 rounds) and the imaging demo study (``pneumonia_study.toml``: PneumoniaMNIST over
  4 hospitals, the ``cnn`` plan, Adam, augmentation), each hospital capped at ``--limit`` training
  images so the bench stays minutes on a laptop.
* Privacy: none, and record-level DP-SGD at epsilon 1, 4 and 8 for the whole study (delta 1e-5,
  C = 1; each site derives its noise from its own size, ``privacy.record_level``).

AUC 0.5 is chance. With small samples an AUC's sampling error is about 0.5/sqrt(n) per side; TPR
at 1 % FPR needs more than 100 non-members to mean anything and is printed for completeness.

    python bench/membership.py [--studies heart pneumonia] [--epsilons inf 8 4 1]
        [--seed 0] [--sample 200] [--limit 300] [--rounds N] [--json PATH]

Each DP study runs DP-SGD with Opacus at every site: on 2 shared cores a heart study takes 2-7
minutes and a pneumonia one 4-15; ``--studies heart --epsilons inf 1`` is the quick look.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from machine import machine

from medfed.coordinator.replies import task_config
from medfed.coordinator.spec import StudySpec
from medfed.data.dataset import Dataset
from medfed.data.heart_disease import heart_disease_centres
from medfed.data.pneumonia import HOSPITALS, split_hospitals
from medfed.demo.heart import heart_study
from medfed.demo.imaging import as_dataset, imaging_study
from medfed.node.audit import AuditSettings, audit_model
from medfed.node.executor import local_config
from medfed.simulation.runner import simulate
from medfed.training.registry import get_plan

STUDIES = ("heart", "pneumonia")
DELTA = 1e-5


def sites_of(study: str, seed: int, limit: int) -> dict[str, Dataset]:
    if study == "heart":
        return dict(heart_disease_centres())
    split = split_hospitals(len(HOSPITALS), seed=seed, limit=limit or None)
    return {name: as_dataset(h.train, h.test) for name, h in zip(HOSPITALS, split, strict=True)}


def spec_of(study: str, epsilon: float, seed: int, rounds: int | None) -> StudySpec:
    spec = heart_study() if study == "heart" else imaging_study()
    changes: dict[str, Any] = {"seed": seed, "eval_every": 0}
    if rounds:
        changes["rounds"] = rounds
    if math.isfinite(epsilon):
        changes |= {"dp_epsilon": epsilon, "dp_delta": DELTA, "dp_max_grad_norm": 1.0}
    return dataclasses.replace(spec, **changes)


def run_study(study: str, epsilon: float, args: argparse.Namespace) -> list[dict[str, Any]]:
    spec = spec_of(study, epsilon, args.seed, args.rounds)
    sites = sites_of(study, args.seed, args.limit)
    plan = get_plan(spec.plan, spec.plan_version)
    n_features = next(iter(sites.values())).n_features
    started = time.perf_counter()
    sim = simulate(spec, sites, plan.init_weights(n_features, spec.seed, spec.plan_options))
    trained = time.perf_counter() - started
    config = local_config(task_config(spec, spec.rounds, {}, {}))
    settings = AuditSettings(sample_size=args.sample, reference_models=4)
    rows = []
    for i, (name, data) in enumerate(sorted(sites.items())):
        rng = np.random.default_rng([args.seed, i])
        began = time.perf_counter()
        metrics = audit_model(plan, sim.model, data, config, spec.rounds, settings, rng)
        accuracy = plan.evaluate(sim.model, data).metrics["accuracy"]
        rows.append(
            {
                "study": study,
                "epsilon": epsilon,
                "site": name,
                "spent": sim.epsilon.get(name),
                "test_accuracy": accuracy,
                "train_seconds": trained,
                "audit_seconds": time.perf_counter() - began,
                **metrics,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| study | DP epsilon | site | members / non-members | loss AUC | loss TPR@1%FPR | "
        "LiRA AUC | LiRA TPR@1%FPR | calibrated AUC | site test accuracy |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        eps = "none" if math.isinf(r["epsilon"]) else f"{r['epsilon']:g}"
        lines.append(
            f"| {r['study']} | {eps} | {r['site']} | {int(r['members'])} / "
            f"{int(r['non_members'])} | {r['loss_auc']:.3f} | {r['loss_tpr_at_low_fpr']:.3f} | "
            f"{_opt(r, 'lira_auc')} | {_opt(r, 'lira_tpr_at_low_fpr')} | "
            f"{_opt(r, 'calibrated_auc')} | {r['test_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> str:
    """Per study and epsilon: the highest AUC any attack reached at any site."""
    lines = [
        "| study | DP epsilon | highest attack AUC over sites | median loss AUC | "
        "train + audit time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["study"], r["epsilon"]), []).append(r)
    for (study, eps), group in groups.items():
        highest = max(v for r in group for k, v in r.items() if k.endswith("_auc"))
        seconds = group[0]["train_seconds"] + sum(r["audit_seconds"] for r in group)
        label = "none" if math.isinf(eps) else f"{eps:g}"
        lines.append(
            f"| {study} | {label} | {highest:.3f} | "
            f"{statistics.median(r['loss_auc'] for r in group):.3f} | {seconds:.0f} |"
        )
    return "\n".join(lines)


def _opt(row: Mapping[str, Any], key: str) -> str:
    return f"{row[key]:.3f}" if key in row else "—"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", choices=STUDIES, default=list(STUDIES))
    parser.add_argument("--epsilons", nargs="+", type=float, default=[math.inf, 8.0, 4.0, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=200, help="rows per side, at most")
    parser.add_argument(
        "--limit", type=int, default=300, help="training images per hospital, 0: all"
    )
    parser.add_argument("--rounds", type=int, default=0, help="0: the demo study's own")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for study in args.studies:
        for epsilon in args.epsilons:
            done = run_study(study, epsilon, args)
            rows += done
            print(table(done).split("\n", 2)[2], flush=True)  # this study's rows as they come
            print(
                f"{study} eps={epsilon}: done at {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    print(summary(rows))
    print()
    print(table(rows))
    print(f"\nmachine: {machine()}; wall {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
