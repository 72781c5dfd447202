"""FLamby's Fed-Heart-Disease table, reproduced with medfed's strategies, next to FLamby's own.

FLamby (Ogier du Terrail et al., "FLamby: Datasets and Benchmarks for Cross-Silo Federated
Learning in Realistic Healthcare Settings", NeurIPS 2022 Datasets and Benchmarks) benchmarks a
logistic regression on the four UCI Heart Disease hospitals (clients 0-3: Cleveland, Hungary,
Switzerland, VA Long Beach; ``medfed.data.heart_disease`` reproduces its rows, labels and splits).
Its protocol, reproduced here (``flamby/config_heart_disease.json``,
``flamby/datasets/fed_heart_disease/common.py``):

* federated: local SGD, batch 4, 100 local steps per round, 15 rounds, per-strategy learning
  rates from FLamby's config; one seed drives the initial model and the minibatch order;
* pooled: Adam, lr 0.001, batch 4, 50 epochs on all training rows; "Local i": the same recipe on
  client i alone;
* metrics: "mean over local tests" = unweighted mean of the 4 clients' test accuracies, per seed,
  then mean and population std (ddof 0) over seeds 42-46; "pooled test" = accuracy on the union
  of the 4 test splits.

Normalization: medfed standardizes every centre's rows with that centre's training statistics,
pooled baseline included (it sees what a federated model sees). FLamby does so for each client's
training and test sets, but standardizes its pooled training set and its "Pooled Test" with the
pooled training statistics. The row "Pooled, FLamby's normalization" trains the pooled baseline
FLamby's way, and the pooled-test column gives both normalizations (site / pooled), the second
being FLamby's.

FLamby's published numbers are read from the repository's copy of its summary
(``src/medfed/data/builtin/flamby_heart_disease/summary.csv``, MIT, Owkin). Table 1 adds medfed's
other aggregators at FedAvg's settings; table 2 tunes each FLamby strategy's learning rates on
seeds 0-4 (same 15 x 100 steps of compute) and reports the chosen setting on seeds 42-46 only.
Every federated run is ``medfed.simulation.simulate``, the code a networked study runs.

    python bench/flamby_heart.py [--seeds 42 43 44 45 46] [--quick] [--no-tune] [--workers N]
                                 [--json PATH]

Prints markdown tables (mean ± std over seeds), notes computed from the run, the machine and the
wall time; about 3.5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medfed.coordinator.spec import Compression, StudySpec
from medfed.data.heart_disease import HEART_FEATURES, HEART_LABEL, heart_disease_centres
from medfed.data.tabular import TabularDataset
from medfed.demo.anchors import FLAMBY_HEART
from medfed.protocol.tensors import Weights
from medfed.simulation.runner import simulate
from medfed.training.baselines import (
    evaluate_everywhere,
    pooled_accuracy,
    train_local,
    train_pooled,
)
from medfed.training.plan import LocalTrainConfig
from medfed.training.registry import get_plan

PLAN = ("logistic_regression", "1")
FLAMBY_SEEDS = (42, 43, 44, 45, 46)
TUNING_SEEDS = (0, 1, 2, 3, 4)
FLAG_STD = 2.0
ADAPTIVE = {"beta1": 0.9, "beta2": 0.999, "tau": 1e-8}  # FLamby's FedAdam/Yogi/Adagrad


@dataclass(frozen=True)
class Method:
    """One federated row: a registry strategy and the local recipe it runs with."""

    label: str
    strategy: str
    learning_rate: float
    params: tuple[tuple[str, float], ...] = ()
    compression: Compression = "none"
    topk_ratio: float = 0.01
    flamby: str = ""
    """FLamby's method name in its summary, "" where FLamby has no such row."""

    def setting(self) -> str:
        shown = [f"lr {self.learning_rate:g}"]
        shown += [f"{k} {v:g}" for k, v in self.params if k not in ADAPTIVE]
        if self.compression == "topk":
            shown.append(f"topk {self.topk_ratio:g}")
        elif self.compression != "none":
            shown.append(self.compression)
        return ", ".join(shown)

    def key(self) -> Method:
        """What determines the result (not the label): equal keys share runs."""
        return dataclasses.replace(self, label="", flamby="")


def _adaptive(server_lr: float) -> tuple[tuple[str, float], ...]:
    return (("server_learning_rate", server_lr), *ADAPTIVE.items())


FLAMBY_METHODS = (
    Method("FedAvg", "fedavg", 0.001, flamby="FedAvg100"),
    Method("FedProx", "fedprox", 0.001, (("mu", 0.01),), flamby="FedProx100"),
    Method("SCAFFOLD", "scaffold", 0.001, (("server_learning_rate", 1.0),), flamby="Scaffold100"),
    Method("Cyclic", "cyclic", 0.01, flamby="Cyclic100"),
    Method("FedAdam", "fedadam", 0.01, _adaptive(0.01), flamby="FedAdam100"),
    Method("FedYogi", "fedyogi", 0.003162, _adaptive(0.01), flamby="FedYogi100"),
    Method("FedAdagrad", "fedadagrad", 0.003162, _adaptive(0.316228), flamby="FedAdagrad100"),
)
EXTRA_METHODS = (
    Method("FedNova", "fednova", 0.001),
    Method("q-FedAvg (q=1)", "qfedavg", 0.001, (("q", 1.0),)),
    Method("Median", "median", 0.001),
    Method("Trimmed mean (trim=1)", "trimmed_mean", 0.001, (("trim", 1.0),)),
    Method("Multi-Krum (f=0, m=2)", "krum", 0.001, (("f", 0.0), ("m", 2.0))),
    Method("Norm bound (0.1)", "normbound", 0.001, (("max_norm", 0.1),)),
    Method("FedAvg + 8-bit", "fedavg", 0.001, compression="q8"),
    Method("FedAvg + top-k 10%", "fedavg", 0.001, compression="topk", topk_ratio=0.1),
)
POOLED_FLAMBY_NORM = "Pooled, FLamby's normalization"
BASELINES = ("Pooled", POOLED_FLAMBY_NORM, "Local 0", "Local 1", "Local 2", "Local 3")
FLAMBY_BASELINES = {"Pooled": "Pooled Training", POOLED_FLAMBY_NORM: "Pooled Training"} | {
    f"Local {i}": f"Local {i}" for i in range(4)
}


def tuning_grid() -> dict[str, list[Method]]:
    """Candidates per strategy: a ~3x learning-rate ladder around FLamby's setting, which comes
    first (the first of equal scores wins). Compute stays FLamby's: rounds x local steps."""
    flamby = {m.label: m for m in FLAMBY_METHODS}
    ladder = (0.001, 0.003, 0.01, 0.03)
    grid = {
        label: [dataclasses.replace(flamby[label], learning_rate=lr) for lr in lrs]
        for label, lrs in (
            ("FedAvg", ladder),
            ("FedProx", ladder),
            ("SCAFFOLD", ladder),
            ("Cyclic", (0.01, 0.003, 0.03)),
        )
    }
    adaptive = {  # (client lr, server lr)
        "FedAdam": ((0.01, 0.01), (0.01, 0.03), (0.01, 0.1), (0.003162, 0.01), (0.003162, 0.03)),
        "FedYogi": ((0.003162, 0.01), (0.01, 0.01), (0.003162, 0.03)),
        "FedAdagrad": ((0.003162, 0.316228), (0.01, 0.316228), (0.003162, 0.1)),
    }
    for label, pairs in adaptive.items():
        base = flamby[label]
        grid[label] = [
            dataclasses.replace(base, learning_rate=c, params=_adaptive(s)) for c, s in pairs
        ]
    return grid


@dataclass(frozen=True)
class Setup:
    seeds: tuple[int, ...] = FLAMBY_SEEDS
    tuning_seeds: tuple[int, ...] = TUNING_SEEDS
    rounds: int = 15
    local_steps: int = 100
    batch_size: int = 4
    pooled_epochs: int = 50
    pooled_learning_rate: float = 0.001
    baselines: tuple[str, ...] = BASELINES
    methods: tuple[Method, ...] = FLAMBY_METHODS + EXTRA_METHODS
    tune: bool = True


QUICK = Setup(
    seeds=(42,),
    rounds=3,
    pooled_epochs=10,
    baselines=("Pooled", POOLED_FLAMBY_NORM, "Local 0"),
    methods=(FLAMBY_METHODS[0], FLAMBY_METHODS[2], FLAMBY_METHODS[3], EXTRA_METHODS[6]),
    tune=False,
)


# -- runs (top-level functions: they travel to worker processes) --------------------------------


@functools.cache
def centres() -> dict[str, TabularDataset]:
    return heart_disease_centres()


def _init(seed: int) -> Weights:
    return get_plan(*PLAN).init_weights(len(HEART_FEATURES), seed, {})


def study(setup: Setup, method: Method, seed: int) -> StudySpec:
    return StudySpec(
        name=f"flamby-heart-{method.strategy}",
        dataset="heart_disease",
        features=HEART_FEATURES,
        label=HEART_LABEL,
        plan=PLAN[0],
        plan_version=PLAN[1],
        rounds=setup.rounds,
        strategy=method.strategy,
        strategy_params=dict(method.params),
        local_epochs=0,
        local_steps=setup.local_steps,
        batch_size=setup.batch_size,
        optimizer="sgd",
        learning_rate=method.learning_rate,
        eval_every=0,
        seed=seed,
        compression=method.compression,
        topk_ratio=method.topk_ratio,
    )


@functools.cache
def pooled_raw() -> TabularDataset:
    """All four centres' raw rows in one table. ``plan.evaluate`` standardizes its test rows with
    the pooled training rows' statistics, which is how FLamby's "Pooled Test" is normalized
    (``FedHeartDisease(pooled=True)``); FLamby's pooled baseline also trains on it."""
    data = list(centres().values())
    return TabularDataset(
        features=HEART_FEATURES,
        label=HEART_LABEL,
        x_train=np.concatenate([d.x_train for d in data]),
        y_train=np.concatenate([d.y_train for d in data]),
        x_test=np.concatenate([d.x_test for d in data]),
        y_test=np.concatenate([d.y_test for d in data]),
    )


def _score(weights: Weights) -> dict[str, Any]:
    """Each client's test accuracy (its own training statistics), their union's accuracy, and
    the union's accuracy standardized with pooled statistics as FLamby's "Pooled Test" is."""
    plan = get_plan(*PLAN)
    results = evaluate_everywhere(plan, weights, centres())
    return {
        "local": [results[site].metrics["accuracy"] for site in centres()],
        "pooled": pooled_accuracy(results),
        "pooled_flamby_norm": plan.evaluate(weights, pooled_raw()).metrics["accuracy"],
    }


def run_federated(setup: Setup, method: Method, seed: int) -> dict[str, Any]:
    """Test accuracies of the final global model, and bytes uploaded per site per round."""
    replies: list[int] = []

    def count(server_round: int, models: Mapping[str, Weights], x: Weights) -> dict[str, Weights]:
        replies.append(len(models))
        return {}  # forges nothing: only counts the sites that trained

    sim = simulate(study(setup, method, seed), centres(), _init(seed), count)
    return _score(sim.model) | {"upload_bytes": sum(sim.upload_bytes) / sum(replies)}


def run_baseline(setup: Setup, name: str, seed: int) -> dict[str, Any]:
    """FLamby's pooled recipe (Adam, batch 4) on all training rows, or on client i's alone."""
    config = LocalTrainConfig(
        epochs=setup.pooled_epochs,
        steps=0,
        batch_size=setup.batch_size,
        optimizer="adam",
        learning_rate=setup.pooled_learning_rate,
        seed=seed,
    )
    plan, data = get_plan(*PLAN), centres()
    if name == "Pooled":  # each centre's rows standardized by that centre, as federated
        weights = train_pooled(data, plan, config, _init(seed))
    elif name == POOLED_FLAMBY_NORM:  # standardized with pooled statistics, as FLamby does
        weights = train_local(pooled_raw(), plan, config, _init(seed))
    else:
        site = list(data)[int(name.removeprefix("Local "))]
        weights = train_local(data[site], plan, config, _init(seed))
    return _score(weights)


Job = tuple[Method | str, int]
"""(a federated method or a baseline's name, seed)."""


def run_job(setup: Setup, job: Job) -> dict[str, Any]:
    what, seed = job
    if isinstance(what, Method):
        return run_federated(setup, what, seed)
    return run_baseline(setup, what, seed)


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)  # a 14-parameter model: threads only add overhead


def run_jobs(setup: Setup, jobs: Sequence[Job], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [run_job(setup, job) for job in jobs]
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")  # no torch state copied by fork
    with ProcessPoolExecutor(workers, context, initializer=_single_thread) as pool:
        return list(pool.map(functools.partial(run_job, setup), jobs, chunksize=2))


# -- summaries ----------------------------------------------------------------------------------


def summarize(runs: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Per seed, the unweighted mean over the 4 local tests; then mean and std (ddof 0)."""
    per_seed = [float(np.mean(r["local"])) for r in runs]
    out: dict[str, Any] = {
        "seeds": list(seeds),
        "mean_over_local_tests": float(np.mean(per_seed)),
        "std_over_seeds": float(np.std(per_seed)),
        "pooled_test": float(np.mean([r["pooled"] for r in runs])),
        "pooled_test_flamby_norm": float(np.mean([r["pooled_flamby_norm"] for r in runs])),
        "per_seed": per_seed,
        "per_client": np.mean([r["local"] for r in runs], axis=0).tolist(),
        "runs": [dict(r) for r in runs],
    }
    if "upload_bytes" in runs[0]:
        out["upload_bytes_per_site_round"] = float(np.mean([r["upload_bytes"] for r in runs]))
    return out


def flamby_published() -> dict[str, dict[str, Any]]:
    """FLamby's Fed-Heart-Disease rows from the repository's copy of its summary."""
    with FLAMBY_HEART.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dataset"] == "heart_disease"]
    return {
        r["method"]: {
            "mean_over_local_tests": float(r["mean_over_local_tests"]),
            "std_over_seeds": float(r["std_over_seeds"]),
            "pooled_test": float(r["pooled_test"]),
            "per_client": [float(r[f"client_test_{i}"]) for i in range(4)],
        }
        for r in rows
    }


def compare(ours: Mapping[str, Any], theirs: Mapping[str, Any] | None) -> dict[str, Any]:
    if theirs is None:
        return {}
    gap = ours["mean_over_local_tests"] - theirs["mean_over_local_tests"]
    units = gap / theirs["std_over_seeds"] if theirs["std_over_seeds"] > 0 else float("inf")
    return {"flamby": dict(theirs), "diff_in_flamby_std": units, "flag": abs(units) > FLAG_STD}


# -- the whole benchmark ------------------------------------------------------------------------


def _key(job: Job) -> Job:
    what, seed = job
    return (what.key() if isinstance(what, Method) else what), seed


def execute(setup: Setup, jobs: Sequence[Job], workers: int, done: dict[Job, Any]) -> None:
    """Run the jobs whose result ``done`` lacks (equal settings under two labels run once)."""
    todo = list({_key(j): j for j in jobs if _key(j) not in done}.values())
    for job, result in zip(todo, run_jobs(setup, todo, workers), strict=True):
        done[_key(job)] = result


def collect(what: Method | str, seeds: Sequence[int], done: Mapping[Job, Any]) -> dict[str, Any]:
    return summarize([done[_key((what, s))] for s in seeds], seeds)


def run_benchmark(setup: Setup, workers: int) -> dict[str, Any]:
    """Table 1 on ``setup.seeds``; with ``setup.tune``, the grid on the tuning seeds, then each
    strategy's best candidate on ``setup.seeds``."""
    grid = tuning_grid() if setup.tune else {}
    rows: list[Method | str] = [*setup.baselines, *setup.methods]
    jobs = [(r, s) for r in rows for s in setup.seeds]
    jobs += [(m, s) for ms in grid.values() for m in ms for s in setup.tuning_seeds]
    done: dict[Job, Any] = {}
    execute(setup, jobs, workers, done)
    flamby = flamby_published()
    table1: dict[str, Any] = {}
    for what in rows:
        row = collect(what, setup.seeds, done)
        if isinstance(what, Method):
            label, setting, theirs = what.label, what.setting(), flamby.get(what.flamby)
        else:
            label, setting, theirs = what, "Adam, lr 0.001", flamby.get(FLAMBY_BASELINES[what])
        table1[label] = {"setting": setting} | row | compare(row, theirs)
    chosen = {label: choose(candidates, setup, done) for label, candidates in grid.items()}
    execute(setup, [(m, s) for m, _ in chosen.values() for s in setup.seeds], workers, done)
    table2 = {label: t | collect(m, setup.seeds, done) for label, (m, t) in chosen.items()}
    return {"table1": table1, "table2": table2, "flamby": flamby}


def choose(
    candidates: Sequence[Method], setup: Setup, done: Mapping[Job, Any]
) -> tuple[Method, dict[str, Any]]:
    """The candidate with the best mean over local tests on the tuning seeds (first of ties)."""
    scores = [collect(m, setup.tuning_seeds, done) for m in candidates]
    best = int(np.argmax([s["mean_over_local_tests"] for s in scores]))
    keep = ("mean_over_local_tests", "std_over_seeds", "pooled_test")
    grid = [
        {"setting": m.setting()} | {k: s[k] for k in keep}
        for m, s in zip(candidates, scores, strict=True)
    ]
    return candidates[best], {
        "setting": candidates[best].setting(),
        "tuning_seeds": list(setup.tuning_seeds),
        "tuning_score": scores[best]["mean_over_local_tests"],
        "grid": grid,
    }


# -- report -------------------------------------------------------------------------------------


def _ms(row: Mapping[str, Any]) -> str:
    return f"{row['mean_over_local_tests']:.3f} ± {row['std_over_seeds']:.3f}"


def _markdown(heads: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [heads, ["---"] * len(heads), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def table1_markdown(table1: Mapping[str, Mapping[str, Any]]) -> str:
    heads = ("method|setting|ours: mean over local tests|ours: pooled test (site / pooled norm.)|"
             f"FLamby: mean over local tests|FLamby: pooled test|diff (FLamby std)|"
             f"> {FLAG_STD:g} std|upload B/site/round").split("|")  # fmt: skip
    rows = []
    for label, row in table1.items():
        pooled = f"{row['pooled_test']:.3f} / {row['pooled_test_flamby_norm']:.3f}"
        cells = [label, row["setting"], _ms(row), pooled, "-", "-", "-", "-"]
        if (theirs := row.get("flamby")) is not None:
            flag = "**yes**" if row["flag"] else ""
            diff = f"{row['diff_in_flamby_std']:+.1f}"
            cells[4:] = [_ms(theirs), f"{theirs['pooled_test']:.3f}", diff, flag]
        upload = row.get("upload_bytes_per_site_round")
        rows.append([*cells, "-" if upload is None else f"{upload:.0f}"])
    return _markdown(heads, rows)


def _flagged_notes(table1: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per-client gaps of each flagged row; for the pooled row, the FLamby-normalized twin."""
    sites, notes = list(centres()), []
    twin = table1.get(POOLED_FLAMBY_NORM)
    for label, row in table1.items():
        if not row.get("flag"):
            continue
        gaps = np.subtract(row["per_client"], row["flamby"]["per_client"])
        worst = int(np.argmax(np.abs(gaps)))
        per = ", ".join(f"client {i} {g:+.3f}" for i, g in enumerate(gaps))
        notes.append(
            f"{label}: ours - FLamby per client (mean over seeds): {per}; largest at "
            f"client {worst} ({sites[worst]})."
        )
        if label == "Pooled" and twin is not None:
            notes.append(
                f"Pooled: FLamby standardizes its pooled training rows with pooled statistics "
                f"and each client's test rows with that client's own; trained that way (row "
                f'"{POOLED_FLAMBY_NORM}") ours is {_ms(twin)}, '
                f"{twin['diff_in_flamby_std']:+.1f} FLamby std from FLamby's {_ms(twin['flamby'])}."
            )
    return notes


def _pooled_test_note(table1: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [r for r in table1.values() if "flamby" in r]
    site = np.mean([abs(r["pooled_test"] - r["flamby"]["pooled_test"]) for r in rows])
    pooled = np.mean([abs(r["pooled_test_flamby_norm"] - r["flamby"]["pooled_test"]) for r in rows])
    return (
        "pooled test: FLamby's column standardizes the union of the test splits with the pooled "
        "training statistics (second number of ours); mean |ours - FLamby| over the "
        f"{len(rows)} rows FLamby has: {pooled:.3f} that way, {site:.3f} with each centre's own."
    )


def _identical_note(table1: Mapping[str, Mapping[str, Any]]) -> str | None:
    groups: dict[str, list[str]] = {}
    for label, row in table1.items():
        groups.setdefault(json.dumps([r["local"] for r in row["runs"]]), []).append(label)
    same = [" = ".join(g) for g in groups.values() if len(g) > 1]
    return "identical test accuracies, every seed and client: " + "; ".join(same) if same else None


def table1_notes(table1: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Footnotes computed from the run itself: flagged rows, pooled test, bytes, FedBN, Krum."""
    notes = [*_flagged_notes(table1), _pooled_test_note(table1)]
    identical = _identical_note(table1)
    notes += [identical] if identical else []
    dense = table1.get("FedAvg", {}).get("upload_bytes_per_site_round")
    for label, row in table1.items():
        upload = row.get("upload_bytes_per_site_round")
        if dense and upload and row.get("setting", "").endswith(("q8", "topk 0.1")):
            notes.append(
                f"{label}: {upload:.0f} B per site per round vs {dense:.0f} B dense "
                f"({dense / upload:.2f}x smaller)."
            )
    model = _init(0)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in model.items())
    if not any(k.endswith(".running_mean") for k in model):
        notes.append(
            f"FedBN: not applicable, the logistic regression ({shapes}) has no "
            "BatchNorm layer to keep local."
        )
    if any(k.startswith("Multi-Krum") for k in table1):
        notes.append(
            f"Multi-Krum: f=0 because Krum needs n > 2f + 2 and there are "
            f"{len(centres())} hospitals; m=2 averages the two most central models."
        )
    return notes


def table2_markdown(
    table2: Mapping[str, Mapping[str, Any]], goal: float, ours: float | None, seeds: str
) -> str:
    heads = ("strategy|chosen setting|tuning score|"
             f"ours: mean over local tests ({seeds})|ours: pooled test (site / pooled norm.)|"
             f">= FLamby pooled {goal:.3f}").split("|")  # fmt: skip
    heads += [] if ours is None else [f">= our pooled {ours:.3f}"]
    rows = []
    for label, row in table2.items():
        pooled = f"{row['pooled_test']:.3f} / {row['pooled_test_flamby_norm']:.3f}"
        cells = [label, row["setting"], f"{row['tuning_score']:.3f}", _ms(row), pooled]
        for bar in [goal] if ours is None else [goal, ours]:
            cells.append("yes" if row["mean_over_local_tests"] >= bar else "no")
        rows.append(cells)
    return _markdown(heads, rows)


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _seeds(seeds: Sequence[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {min(seeds)}-{max(seeds)}"


def machine() -> str:
    uname = platform.uname()
    return (
        f"{uname.system} {uname.release} {uname.machine} · {_cpu_name()} · "
        f"{psutil.cpu_count()} CPUs · {psutil.virtual_memory().total / 2**30:.0f} GiB · "
        f"Python {platform.python_version()}"
    )


def report(setup: Setup, result: Mapping[str, Any]) -> None:
    seeds = _seeds(setup.seeds)
    print(
        f"Table 1. Fed-Heart-Disease, FLamby settings: {setup.rounds} rounds x "
        f"{setup.local_steps} SGD steps, batch {setup.batch_size}; baselines Adam, "
        f"{setup.pooled_epochs} epochs; {seeds}; mean ± std (ddof 0) over seeds\n"
    )
    if (setup.rounds, setup.local_steps, setup.pooled_epochs) != (15, 100, 50):
        print("(not FLamby's compute: the FLamby columns and flags are for orientation only)\n")
    print(table1_markdown(result["table1"]))
    print()
    for note in table1_notes(result["table1"]):
        print(f"- {note}")
    if not result["table2"]:
        return
    goal = result["flamby"]["Pooled Training"]["mean_over_local_tests"]
    pooled = {
        k: result["table1"][k] for k in ("Pooled", POOLED_FLAMBY_NORM) if k in result["table1"]
    }
    ours = pooled["Pooled"]["mean_over_local_tests"] if "Pooled" in pooled else None
    tuned = _seeds(setup.tuning_seeds)
    print(
        f"\nTable 2. Tuned: setting chosen on {tuned} (best mean over local tests), reported "
        f"on {seeds}; same compute ({setup.rounds} x {setup.local_steps} steps)\n"
    )
    print(table2_markdown(result["table2"], goal, ours, seeds))
    print(f"\nTuning grid (mean over local tests on {tuned}):")
    for label, row in result["table2"].items():
        grid = "; ".join(f"{g['setting']}: {g['mean_over_local_tests']:.3f}" for g in row["grid"])
        print(f"- {label}: {grid} -> chosen {row['setting']}")
    print(f"\nPooled reference ({seeds}): FLamby {goal:.3f}", end="")
    for label, row in pooled.items():
        print(f"; ours, {label}: {_ms(row)}", end="")
    print(".")
    print(
        f"Note: the {tuned} runs score on the same test splits as {seeds} (FLamby has no "
        "validation split); only the initial model and minibatch order differ."
    )


S = TypeVar("S")


def bench_setup(
    argv: Sequence[str] | None, doc: str, full: S, quick: S, quick_help: str, tune_help: str
) -> tuple[S, int, argparse.Namespace]:
    """The command line the heart benches share: the setup (full or quick, seeds, tuning) and
    how many worker processes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 42 .. 46")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--no-tune", action="store_true", help=tune_help)
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default: every CPU; 1 with --quick)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    setup = quick if args.quick else full
    if args.seeds is not None:
        setup = dataclasses.replace(setup, seeds=tuple(args.seeds))  # type: ignore[type-var]
    if args.no_tune:
        setup = dataclasses.replace(setup, tune=False)  # type: ignore[type-var]
    return setup, args.workers or (1 if args.quick else os.cpu_count() or 1), args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    setup, workers, args = bench_setup(
        argv, __doc__ or "", Setup(), QUICK,
        "1 seed, 3 rounds, a few rows, no tuning (smoke test)", "skip table 2",
    )  # fmt: skip
    started = time.perf_counter()
    result = run_benchmark(setup, workers)
    wall = time.perf_counter() - started
    report(setup, result)
    print(f"\nmachine: {machine()} · {workers} worker(s) · wall time {wall:.1f} s")
    result = dict(result) | {
        "setup": dataclasses.asdict(setup),
        "wall_s": wall,
        "machine": machine(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
