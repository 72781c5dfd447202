"""Record-level DP-SGD on the Fed-Heart-Disease federation, next to FLamby's DP sweep.

Every hospital trains with DP-SGD (Abadi et al., "Deep Learning with Differential Privacy",
CCS 2016): Poisson-sampled lots at rate q = batch / n, per-record gradients clipped to C, Gaussian
noise N(0, sigma^2 C^2). The study asks each site for a target epsilon for the *whole study*; each
site derives its own sigma from its own n so that all R x K local steps of all rounds stay at or
under the target (``medfed.privacy.record_level.plan_record_dp``, RDP accountant of Mironov 2017
via Google's ``dp_accounting``). ``medfed.simulation.simulate`` runs exactly what a hospital node
runs, and ``sim.epsilon`` is what each site's ledger books.

Protocol: the four UCI hospitals of FLamby (Ogier du Terrail et al., NeurIPS 2022 Datasets and
Benchmarks; ``medfed.data.heart_disease``), FedAvg, logistic regression, plain SGD, delta 1e-5;
epsilon in {0.5, 1, 2, 4, 8, inf} (inf: the same recipe without DP), seeds 42-46 (initial model
and lot sampling; the DP noise itself comes from the OS's CSPRNG and is not reproducible, by
design), plus one PLD-accounted row at epsilon 1. "Mean over local tests" is the unweighted mean
of the four test accuracies per seed, then mean and std (ddof 0) over seeds; "pooled test" is the
accuracy on the union of the test splits.

The recipe is fixed across epsilons: 15 rounds (FLamby's) x 20 local steps, batch 32, lr 0.03,
C = 1. It was chosen once, on seeds 0-4 at epsilon 1 (rdp), never on 42-46, from 15 rounds x
{20, 50} steps x batch {16, 32} x lr {0.03, 0.1, 0.3}: the candidates within 0.005 of the best
mean over local tests count as tied (DP noise is not reproducible and a 5-seed mean moves by about
that much between repetitions), and among them the fewest noisy steps, then the largest batch,
wins -- the DP-friendly end. Two repetitions of that grid gave 0.729/0.727 for 50 steps, batch 32,
lr 0.03 and 0.726/0.728 for the chosen 20 steps, batch 32, lr 0.03; a wider grid (5-15 rounds,
10-50 steps, batch 8-32, lr 0.03-1) had nothing better. The bench reruns the 12-candidate grid
(``--no-tune`` skips it) and says whether the same rule would still pick this recipe.

FLamby's sweep (``flamby/dp_example``; copy in
``src/medfed/data/builtin/flamby_heart_disease/dp_results_fed_heart_disease.csv``, MIT, Owkin) is
summarized per (e, d) and shown at the closest setting. Its epsilons are *not* comparable at face
value: its ``_Model`` calls Opacus's ``make_private_with_epsilon(..., epochs=nrounds)`` on a batch-4
loader, so it accounts 15 epochs = 15 x ceil(n / 4) steps per client, while each round runs
``num_updates = 100`` steps, 1500 in all. The bench recomputes what FLamby's noise really spends
over the 1500 steps (our RDP accountant, which can differ slightly from the Opacus one FLamby used).

Speed: ``simulate`` re-derives every site's noise multiplier each round, as a node does, and books
epsilon after every round; both are pure functions of their arguments, so the bench memoizes them
(``fast_accounting``), which changes no number and makes a DP run about 10x faster.

    python bench/dp_heart.py [--seeds 42 43 44 45 46] [--quick] [--no-tune] [--workers N]
                             [--json PATH]

Prints markdown tables, notes computed from the run, the machine and the wall time: 27 minutes
on this 2-core machine with the recipe grid (95 DP studies), about 10 with ``--no-tune``.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import functools
import json
import logging
import math
import multiprocessing
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flamby_heart import (  # the same report helpers and machine line
    _markdown,
    _seeds,
    bench_setup,
    machine,
)

from medfed.coordinator.replies import task_config
from medfed.coordinator.spec import Accountant, StudySpec
from medfed.data.heart_disease import HEART_FEATURES, HEART_LABEL, heart_disease_centres
from medfed.data.tabular import TabularDataset
from medfed.node.executor import local_config, record_dp_request
from medfed.privacy import record_level
from medfed.privacy.accounting import MIN_NOISE_MULTIPLIER, dpsgd_epsilon, noise_for_epsilon
from medfed.simulation import runner
from medfed.simulation.runner import simulate
from medfed.training.baselines import pooled_accuracy
from medfed.training.registry import get_plan

PLAN = ("logistic_regression", "1")
SEEDS = (42, 43, 44, 45, 46)
TUNING_SEEDS = (0, 1, 2, 3, 4)
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
DELTA = 1e-5
GOAL = 0.70
"""The issue's bar: mean over local tests at an honestly accounted epsilon = 1."""
TIE = 0.005
FLAMBY_DP = (
    Path(__file__).resolve().parent.parent
    / "src/medfed/data/builtin/flamby_heart_disease/dp_results_fed_heart_disease.csv"
)
# FLamby's dp_example: batch 4 (BATCH_SIZE), 15 rounds (get_nb_max_rounds(100)) of 100 updates.
FLAMBY_BATCH, FLAMBY_ROUNDS, FLAMBY_UPDATES = 4, 15, 100
FLAMBY_HONEST_DELTA = 1e-4
"""FLamby's delta closest to ours; its settings are re-accounted at this delta."""


@dataclass(frozen=True)
class Recipe:
    """The local training every site runs, DP or not."""

    rounds: int = 15
    local_steps: int = 20
    batch_size: int = 32
    learning_rate: float = 0.03
    max_grad_norm: float = 1.0

    def setting(self) -> str:
        return (f"{self.rounds} rounds x {self.local_steps} steps, batch {self.batch_size}, "
                f"lr {self.learning_rate:g}, C {self.max_grad_norm:g}")  # fmt: skip

    def rank(self) -> tuple[int, int]:
        """The tie-break: fewer noisy steps first, then larger lots (smaller is better)."""
        return self.rounds * self.local_steps, -self.batch_size


RECIPE = Recipe()
TUNING_GRID = tuple(
    Recipe(local_steps=k, batch_size=b, learning_rate=lr)
    for k in (20, 50)
    for b in (16, 32)
    for lr in (0.03, 0.1, 0.3)
)


@dataclass(frozen=True)
class Run:
    """One federated study: a recipe at a target epsilon (inf = no DP) and seed."""

    recipe: Recipe
    epsilon: float
    accountant: Accountant
    seed: int


@dataclass(frozen=True)
class FlambyAccounting:
    """What FLamby's (e, d) setting really spends at one client (n training rows)."""

    epsilon: float
    delta: float
    n_train: int


Job = Run | FlambyAccounting


@dataclass(frozen=True)
class Setup:
    seeds: tuple[int, ...] = SEEDS
    epsilons: tuple[float, ...] = EPSILONS
    pld_epsilons: tuple[float, ...] = (1.0,)
    recipe: Recipe = RECIPE
    tune: bool = True
    tuning_seeds: tuple[int, ...] = TUNING_SEEDS
    tuning_epsilon: float = 1.0
    grid: tuple[Recipe, ...] = TUNING_GRID
    flamby_epsilons: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 50.0)


QUICK = Setup(
    seeds=(42,),
    epsilons=(1.0, math.inf),
    pld_epsilons=(),
    recipe=dataclasses.replace(RECIPE, rounds=2),
    tune=False,
    flamby_epsilons=(1.0,),
)


# -- runs (top-level functions: they travel to worker processes) --------------------------------


@functools.cache
def centres() -> dict[str, TabularDataset]:
    return heart_disease_centres()


def study(run: Run) -> StudySpec:
    r = run.recipe
    return StudySpec(
        name="dp-heart",
        dataset="heart_disease",
        features=HEART_FEATURES,
        label=HEART_LABEL,
        plan=PLAN[0],
        plan_version=PLAN[1],
        rounds=r.rounds,
        strategy="fedavg",
        local_epochs=0,
        local_steps=r.local_steps,
        batch_size=r.batch_size,
        optimizer="sgd",
        learning_rate=r.learning_rate,
        eval_every=0,
        seed=run.seed,
        dp_epsilon=0.0 if math.isinf(run.epsilon) else run.epsilon,
        dp_delta=DELTA,
        dp_max_grad_norm=r.max_grad_norm,
        dp_accountant=run.accountant,
    )


def run_study(run: Run) -> dict[str, Any]:
    """Test accuracies of the final global model, and each site's noise and spent epsilon."""
    init = get_plan(*PLAN).init_weights(len(HEART_FEATURES), run.seed, {})
    sim = simulate(study(run), centres(), init)
    results = sim.evaluate()
    return {
        "local": [results[site].metrics["accuracy"] for site in centres()],
        "pooled": pooled_accuracy(results),
        "epsilon_spent": dict(sim.epsilon),
        "noise_multiplier": noise_multipliers(sim.spec),
        "dp_steps": dict(sim.dp_steps),
    }


def noise_multipliers(spec: StudySpec) -> dict[str, float]:
    """Each site's sigma, derived from the same task settings ``Simulation.private`` uses."""
    task = task_config(spec, 1, {}, {})
    request, config = record_dp_request(task), local_config(task)
    if not request.enabled:
        return {}
    n_rows = {site: len(data.y_train) for site, data in centres().items()}
    plans = {
        site: runner.plan_record_dp(
            request, n, config.batch_size, config.steps, config.epochs, spec.rounds
        )
        for site, n in n_rows.items()
    }
    return {site: plan.noise_multiplier for site, plan in plans.items()}


def flamby_accounting(job: FlambyAccounting) -> dict[str, Any]:
    """FLamby's noise for (e, d) as it accounts it (15 epochs of a batch-4 loader, sample rate
    1 / len(loader)), and the epsilon of the 15 x 100 steps it actually takes at that noise."""
    batches = math.ceil(job.n_train / FLAMBY_BATCH)
    rate, accounted = 1 / batches, FLAMBY_ROUNDS * batches
    sigma = noise_for_epsilon(job.epsilon, job.delta, rate, accounted)
    taken = FLAMBY_ROUNDS * FLAMBY_UPDATES
    floor = sigma <= MIN_NOISE_MULTIPLIER  # our search stops there; Opacus may go lower
    return {
        "accounted_steps": accounted,
        "steps": taken,
        "noise_multiplier": sigma,
        "honest_epsilon": math.inf if floor else dpsgd_epsilon(sigma, rate, taken, job.delta),
    }


def run_job(job: Job) -> dict[str, Any]:
    return run_study(job) if isinstance(job, Run) else flamby_accounting(job)


def _quiet_and_cached() -> None:
    """Worker initializer: one torch thread, memoized accounting, no absl chatter."""
    import torch

    torch.set_num_threads(1)  # a 14-parameter model: threads only add overhead
    fast_accounting().__enter__()


@contextlib.contextmanager
def fast_accounting() -> Iterator[None]:
    """Memoize the runner's per-round noise derivation and epsilon booking.

    ``simulate`` calls ``plan_record_dp`` (a bracketed search over the accountant) for every site
    every round, and ``dpsgd_epsilon`` after every round, as a node does; both are pure functions
    of hashable arguments, so caching returns the very same numbers. The RDP accountant also logs
    a warning through absl for every fractional order it drops at small sigma; silenced here.
    """
    patched = [(runner, "plan_record_dp"), (record_level, "dpsgd_epsilon")]
    saved = [(module, name, getattr(module, name)) for module, name in patched]
    absl = logging.getLogger("absl")
    level = absl.level
    for module, name, original in saved:
        setattr(module, name, functools.cache(original))
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
        absl.setLevel(level)


def run_jobs(jobs: Sequence[Job], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with fast_accounting():
                return [run_job(job) for job in jobs]
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")  # no torch state copied by fork
    with ProcessPoolExecutor(workers, context, initializer=_quiet_and_cached) as pool:
        # Jobs come grouped by setting, seeds last: a chunk shares one noise derivation.
        return list(pool.map(run_job, jobs, chunksize=5))


# -- summaries ----------------------------------------------------------------------------------


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    per_seed = [float(np.mean(r["local"])) for r in runs]
    noise = [s for r in runs for s in r["noise_multiplier"].values()]
    spent = [e for r in runs for e in r["epsilon_spent"].values()]
    return {
        "mean_over_local_tests": float(np.mean(per_seed)),
        "std_over_seeds": float(np.std(per_seed)),
        "min_over_seeds": float(np.min(per_seed)),
        "pooled_test": float(np.mean([r["pooled"] for r in runs])),
        "epsilon_spent_max": max(spent) if spent else None,
        "noise_multiplier_by_site": runs[0]["noise_multiplier"],
        "noise_multiplier_range": [min(noise), max(noise)] if noise else None,
        "per_seed": per_seed,
        "per_client": np.mean([r["local"] for r in runs], axis=0).tolist(),
        "runs": [dict(r) for r in runs],
    }


def flamby_published() -> dict[tuple[float, float], dict[str, float]]:
    """FLamby's sweep: mean and std (ddof 0) over seeds of ``perf`` per (e, d); no DP is
    (inf, 0)."""
    groups: dict[tuple[float, float], list[float]] = collections.defaultdict(list)
    with FLAMBY_DP.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (float(row["e"]), float(row["d"])) if row["e"] else (math.inf, 0.0)
            groups[key].append(float(row["perf"]))
    return {
        k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n_seeds": len(v)}
        for k, v in groups.items()
    }


def closest_flamby(
    epsilon: float, flamby: Mapping[tuple[float, float], Any]
) -> tuple[float, float]:
    """FLamby's setting nearest ours: epsilon nearest on a log scale, delta nearest to ours."""
    if math.isinf(epsilon):
        return math.inf, 0.0
    deltas = {d for _, d in flamby if d > 0}
    delta = min(deltas, key=lambda d: abs(math.log(d / DELTA)))
    epsilons = [e for e, d in flamby if d == delta]
    return min(epsilons, key=lambda e: (abs(math.log(e / epsilon)), e)), delta


def _label(epsilon: float) -> str:
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def _jobs(setup: Setup) -> tuple[list[Run], list[FlambyAccounting]]:
    runs = [Run(setup.recipe, e, "rdp", s) for e in setup.epsilons for s in setup.seeds]
    runs += [Run(setup.recipe, e, "pld", s) for e in setup.pld_epsilons for s in setup.seeds]
    if setup.tune:
        runs += [Run(r, setup.tuning_epsilon, "rdp", s) for r in setup.grid
                 for s in setup.tuning_seeds]  # fmt: skip
    sizes = [len(d.y_train) for d in centres().values()]
    flamby = [FlambyAccounting(e, FLAMBY_HONEST_DELTA, n)
              for e in setup.flamby_epsilons for n in sizes]  # fmt: skip
    return list(dict.fromkeys(runs)), flamby


def run_benchmark(setup: Setup, workers: int) -> dict[str, Any]:
    runs, accounting = _jobs(setup)
    done = dict(zip([*runs, *accounting], run_jobs([*runs, *accounting], workers), strict=True))
    flamby = flamby_published()
    sweep: dict[str, Any] = {}
    for accountant, epsilons in (("rdp", setup.epsilons), ("pld", setup.pld_epsilons)):
        for e in epsilons:
            row = summarize([done[Run(setup.recipe, e, accountant, s)] for s in setup.seeds])
            key = closest_flamby(e, flamby)
            row |= {"epsilon": _label(e), "accountant": accountant if e < math.inf else "-",
                    "flamby_setting": key, "flamby": flamby[key]}  # fmt: skip
            sweep[f"{_label(e)} {accountant}"] = row
    tuning = [
        {"recipe": dataclasses.asdict(r), "setting": r.setting()}
        | summarize([done[Run(r, setup.tuning_epsilon, "rdp", s)] for s in setup.tuning_seeds])
        for r in (setup.grid if setup.tune else ())
    ]
    honest: dict[str, Any] = {}
    for e in setup.flamby_epsilons:
        sites = {s: done[FlambyAccounting(e, FLAMBY_HONEST_DELTA, len(d.y_train))]
                 for s, d in centres().items()}  # fmt: skip
        honest[_label(e)] = {"sites": sites,
                             "max": max(v["honest_epsilon"] for v in sites.values())}  # fmt: skip
    return {"sweep": sweep, "tuning": tuning, "flamby": flamby, "flamby_honest": honest}


def pick(tuning: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The bench's rule: ties within ``TIE`` of the best mean, then ``Recipe.rank``."""
    best = max(t["mean_over_local_tests"] for t in tuning)
    tied = [t for t in tuning if t["mean_over_local_tests"] >= best - TIE]
    return min(tied, key=lambda t: Recipe(**t["recipe"]).rank())


# -- report -------------------------------------------------------------------------------------


def _ms(row: Mapping[str, Any]) -> str:
    return f"{row['mean_over_local_tests']:.3f} ± {row['std_over_seeds']:.3f}"


def sweep_markdown(sweep: Mapping[str, Mapping[str, Any]], honest: Mapping[str, Any]) -> str:
    heads = [
        "ε target", "accountant", "ε spent (max over sites)", "noise multiplier per site",
        "mean over local tests", "pooled test", "FLamby, closest (e, d)",
        "FLamby: mean over local tests",
        f"FLamby's e over the steps it runs (d {FLAMBY_HONEST_DELTA:g}, max over clients)",
    ]  # fmt: skip
    rows = []
    for row in sweep.values():
        e, d = row["flamby_setting"]
        noise, spent = row["noise_multiplier_range"], row["epsilon_spent_max"]
        redone = honest.get(_label(e), {}).get("max") if d == FLAMBY_HONEST_DELTA else None
        rows.append([
            row["epsilon"], row["accountant"], "-" if spent is None else f"{spent:.3f}",
            "-" if noise is None else f"{noise[0]:.2f}-{noise[1]:.2f}", _ms(row),
            f"{row['pooled_test']:.3f}", "no DP" if math.isinf(e) else f"e {e:g}, d {d:g}",
            f"{row['flamby']['mean']:.3f} ± {row['flamby']['std']:.3f}",
            "-" if redone is None else f"{redone:.1f}",
        ])  # fmt: skip
    return _markdown(heads, rows)


def flamby_markdown(flamby: Mapping[tuple[float, float], Mapping[str, float]]) -> str:
    """FLamby's mean perf over seeds, one row per e, one column per d."""
    deltas = sorted({d for _, d in flamby if d > 0}, reverse=True)
    epsilons = sorted({e for e, d in flamby if d > 0})
    heads = ["e \\ d", *[f"{d:g}" for d in deltas]]
    cell = "{mean:.3f} ± {std:.3f}"
    rows = [["no DP", cell.format(**flamby[(math.inf, 0.0)]), *[""] * (len(deltas) - 1)]]
    for e in epsilons:
        rows.append([f"{e:g}", *[cell.format(**flamby[(e, d)]) for d in deltas]])
    return _markdown(heads, rows)


def tuning_lines(setup: Setup, tuning: Sequence[Mapping[str, Any]]) -> list[str]:
    chosen = pick(tuning)
    same = Recipe(**chosen["recipe"]) == setup.recipe
    fixed = next((t for t in tuning if Recipe(**t["recipe"]) == setup.recipe), None)
    lines = [f"- {t['setting']}: {_ms(t)}" for t in tuning]
    verdict = ("picks the fixed recipe again" if same else
               f"would now pick {chosen['setting']} ({_ms(chosen)}); the fixed recipe scored "
               f"{'n/a' if fixed is None else _ms(fixed)} -- DP noise is not reproducible, so "
               "near-ties can swap between runs; the sweep keeps the fixed recipe")  # fmt: skip
    return [
        *lines,
        f"- rule (best within {TIE:g}, then fewest steps, then largest batch): {verdict}",
    ]


def _goal_notes(setup: Setup, sweep: Mapping[str, Mapping[str, Any]]) -> list[str]:
    one = sweep.get("1 rdp")
    if one is None:
        return []
    met = "MET" if one["mean_over_local_tests"] >= GOAL else "NOT MET"
    out = [
        f"Goal (mean over local tests >= {GOAL:.2f} at an honestly accounted ε = 1, rdp, "
        f"δ {DELTA:g}, every local step of every round counted): {met} -- {_ms(one)}, "
        f"worst seed {one['min_over_seeds']:.3f}, ε spent {one['epsilon_spent_max']:.3f}."
    ]
    sizes = {s: len(d.y_train) for s, d in centres().items()}
    batch = setup.recipe.batch_size
    per_site = ", ".join(
        f"{s} (n {sizes[s]}, q {min(1.0, batch / sizes[s]):.2f}) {v:.2f}"
        for s, v in one["noise_multiplier_by_site"].items()
    )
    out.append(
        f"Noise multiplier at ε = 1 per site: {per_site}. A smaller site puts a larger share of "
        "its rows in each lot (q = batch / n, at most 1), gets less amplification by sampling "
        "and so more noise for the same ε; FedAvg weights it by n."
    )
    if (inf := sweep.get("inf rdp")) is not None:
        gap = one["mean_over_local_tests"] - inf["mean_over_local_tests"]
        out.append(f"ε = 1 minus the same recipe without DP: {gap:+.3f} (mean over local "
                   "tests).")  # fmt: skip
    if (pld := sweep.get("1 pld")) is not None:
        a, b = one["noise_multiplier_range"], pld["noise_multiplier_range"]
        out.append(f"The PLD accountant (tighter) meets ε = 1 with noise {b[0]:.2f}-{b[1]:.2f} "
                   f"where RDP needs {a[0]:.2f}-{a[1]:.2f}.")  # fmt: skip
    return out


def _flamby_notes(setup: Setup, result: Mapping[str, Any]) -> list[str]:
    out = []
    steps = setup.recipe.rounds * setup.recipe.local_steps
    some = next(iter(result["flamby_honest"].values()), None)
    if some is not None:
        counted = ", ".join(f"{s} {v['accounted_steps']}" for s, v in some["sites"].items())
        out.append(
            "FLamby under-counts steps. Checked in the stored copy of its code "
            "(flamby/strategies/utils.py at 027569a: _Model calls Opacus's "
            "make_private_with_epsilon(..., epochs=nrounds) on a batch-4 loader; "
            "flamby/dp_example/create_fed_heart_disease_dp_results.py at 4dc8c52: FedAvg with "
            "num_updates=100 per round; not read at edacf54 itself): it accounts 15 epochs = "
            f"{counted} steps per client but runs {FLAMBY_ROUNDS} x {FLAMBY_UPDATES} = "
            f"{FLAMBY_ROUNDS * FLAMBY_UPDATES}. Its e is therefore not our ε at face value; the "
            "last column of table 1 re-accounts its noise over the steps it runs (our RDP "
            f"accountant, d {FLAMBY_HONEST_DELTA:g}). We count all {steps} noisy steps per site."
        )
    largest = max(len(d.y_train) for d in centres().values())
    flamby = result["flamby"]
    private = [v["mean"] for (_, d), v in flamby.items() if d > 0]
    out += [
        f"δ: FLamby sweeps d from 0.1 to 1e-4; with at most {largest} training rows per client, "
        "d = 0.1 or 0.01 (>= 1/n) admits a mechanism that publishes one record outright. "
        f"We use δ = {DELTA:g}.",
        "FLamby's DP runs keep its FedAvg recipe (SGD lr 0.001, batch 4, clip 1.1): no DP "
        f"{flamby[(math.inf, 0.0)]['mean']:.3f}, every (e, d) between {min(private):.3f} and "
        f"{max(private):.3f}; our ε = inf row is our recipe without DP.",
    ]
    return out


def notes(setup: Setup, result: Mapping[str, Any]) -> list[str]:
    """Footnotes computed from the run: the goal, per-site noise, FLamby's accounting."""
    return [*_goal_notes(setup, result["sweep"]), *_flamby_notes(setup, result)]


def report(setup: Setup, result: Mapping[str, Any]) -> None:
    seeds = _seeds(setup.seeds)
    print(
        f"Table 1. Record-level DP-SGD, Fed-Heart-Disease, FedAvg + logistic regression, "
        f"{setup.recipe.setting()}, δ {DELTA:g}; {seeds}; mean ± std (ddof 0) over seeds\n"
    )
    print(sweep_markdown(result["sweep"], result["flamby_honest"]))
    print(
        "\nTable 2. FLamby's DP sweep (flamby/dp_example, FedAvg, batch 4, 15 x 100 steps, "
        "C 1.1): mean ± std over seeds 42-46 of the mean over local tests, per (e, d); "
        "e as FLamby accounts it\n"
    )
    print(flamby_markdown(result["flamby"]))
    print()
    for note in notes(setup, result):
        print(f"- {note}")
    if result["tuning"]:
        print(
            f"\nRecipe check: the fixed recipe was chosen on {_seeds(setup.tuning_seeds)} at "
            f"ε = {setup.tuning_epsilon:g} (rdp), never on {seeds}; the grid, rerun now "
            "(mean over local tests):"
        )
        for line in tuning_lines(setup, result["tuning"]):
            print(line)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    setup, workers, args = bench_setup(
        argv, __doc__ or "", Setup(), QUICK,
        "1 seed, 2 rounds, ε in {1, inf}, no grid (smoke)", "skip the recipe check grid",
    )  # fmt: skip
    started = time.perf_counter()
    result = run_benchmark(setup, workers)
    wall = time.perf_counter() - started
    report(setup, result)
    print(f"\nmachine: {machine()} · {workers} worker(s) · wall time {wall:.1f} s")
    result = dict(result) | {
        "flamby": [{"e": e, "d": d} | v for (e, d), v in result["flamby"].items()],
        "setup": dataclasses.asdict(setup),
        "wall_s": wall,
        "machine": machine(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
