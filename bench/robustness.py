"""Robustness: final accuracy of each aggregator when some hospitals are malicious.

The four UCI Heart Disease hospitals' training rows are pooled (raw features) and cut into ten
simulated hospitals with Dirichlet(1.0) label skew (NIID-Bench; at least 10 rows each), each split
80/20 into train and test. A logistic regression is trained for 20 rounds (20 SGD steps of batch 8
at lr 0.05 per round) with ``medfed.simulation.simulate``, the code a networked study runs. The
first ``k`` hospitals by name are malicious: through the simulator's ``tamper`` hook they replace
the model ``y`` they honestly computed with a forged one, as the coordinator would receive it.
With ``x`` the global model and ``d = y - x``:

* ``sign_flip``: ``x - 4 d`` (reversed and boosted);
* ``scaled``: ``x + 20 d`` (boosted, as in model replacement; Bagdasaryan et al., AISTATS 2020);
* ``gaussian``: ``x + N(0, I)`` (a faulty site; noise from a generator seeded per round);
* ``alie``: "A Little Is Enough" (Baruch, Baruch and Goldberg, NeurIPS 2019): every malicious site
  sends ``x + mean(d) - z std(d)``, mean and (population) std taken per coordinate over the deltas
  all ``n`` sites computed honestly (the omniscient variant), with ``s = floor(n/2 + 1) - k`` and
  ``z = Phi^-1((n - s) / n)``: the largest shift that still hides among enough honest values to
  pass median- and Krum-style filters. For n = 10, k = 1 this gives z = 0: the attacker sends the
  honest mean and cannot do harm by construction; k = 3 gives z = 0.52.

Aggregators (``medfed.strategies.registry``) are sized for the ``k`` they face: fedavg, median,
trimmed_mean (trim = k), krum (f = k, m = n - k: Multi-Krum; needs n > 2f + 2) and normbound
(max_norm = the median norm of the honest deltas in round 1, which starts from the same model for
every aggregator: calibrated per seed, not hard-coded). The "none" column is attack-free, with the
aggregators sized for the smallest k.

Every final model is scored on ONE held-out set that no simulated hospital has seen: the union of
the four hospitals' original test splits, standardized with the pooled training rows' statistics
(each simulated hospital standardizes with its own, as a real node does). A second table gives the
shift: the L2 distance between the attacked final model and the attack-free one of the same
aggregator, seed and sizing, i.e. how far the attack moved the model, whether or not the accuracy
shows it.

    python bench/robustness.py [--seeds 0 1 2] [--quick] [--workers N] [--json PATH]

Cells are mean ± std (population) over seeds; the machine and wall time are printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medfed.coordinator.spec import StudySpec
from medfed.data.heart_disease import HEART_FEATURES, HEART_LABEL, heart_disease_centres
from medfed.data.partition import dirichlet_label_skew, split_dataset
from medfed.data.tabular import TabularDataset
from medfed.errors import ConfigError
from medfed.protocol.tensors import Weights
from medfed.simulation.runner import Tamper, simulate
from medfed.strategies.robust import flatten, unflatten
from medfed.training.registry import get_plan

N_SITES = 10
ALPHA = 1.0
MIN_SIZE = 10
TEST_FRACTION = 0.2
PLAN = ("logistic_regression", "1")
ATTACKS = ("sign_flip", "scaled", "gaussian", "alie")
AGGREGATORS = ("fedavg", "median", "trimmed_mean", "krum", "normbound")
SIGN_FLIP_BOOST = 4.0
SCALE_BOOST = 20.0
NOISE_STD = 1.0

Vector = npt.NDArray[np.float64]
Metrics = dict[str, float]


@dataclass(frozen=True)
class Setup:
    """What one table varies over, and the local training recipe."""

    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 20
    ks: tuple[int, ...] = (1, 3)
    attacks: tuple[str, ...] = ATTACKS
    aggregators: tuple[str, ...] = AGGREGATORS
    local_steps: int = 20
    batch_size: int = 8
    learning_rate: float = 0.05


QUICK = Setup(
    seeds=(0,), rounds=3, ks=(1,), attacks=("sign_flip", "scaled"), aggregators=("fedavg", "median")
)


# -- data ---------------------------------------------------------------------------------------


def pooled_heart() -> TabularDataset:
    """The four hospitals' raw rows in one table: their train splits, and their test splits.

    Raw, not standardized: each simulated hospital standardizes its own rows, and the held-out
    evaluation (``plan.evaluate``) standardizes the test rows with this table's training rows.
    """
    centres = list(heart_disease_centres().values())
    return TabularDataset(
        features=HEART_FEATURES,
        label=HEART_LABEL,
        x_train=np.concatenate([c.x_train for c in centres]),
        y_train=np.concatenate([c.y_train for c in centres]),
        x_test=np.concatenate([c.x_test for c in centres]),
        y_test=np.concatenate([c.y_test for c in centres]),
    )


@functools.cache
def held_out() -> TabularDataset:
    return pooled_heart()


@functools.lru_cache(maxsize=4)
def seed_data(seed: int) -> tuple[dict[str, TabularDataset], Weights]:
    """One seed's ``N_SITES`` label-skewed hospitals, named in partition order, and its initial
    model."""
    rng = np.random.default_rng([seed, 0xDA7A])
    pool = held_out()
    parts = dirichlet_label_skew(pool.y_train, N_SITES, ALPHA, rng, min_size=MIN_SIZE)
    sites = split_dataset(pool, parts, TEST_FRACTION, rng)
    init = get_plan(*PLAN).init_weights(len(HEART_FEATURES), seed, {})
    return {f"hospital-{i:02d}": data for i, data in enumerate(sites)}, init


# -- attacks ------------------------------------------------------------------------------------


def alie_z(n: int, k: int) -> float:
    """Baruch et al. 2019: s = floor(n/2 + 1) - k sites must be "convinced"; z = Phi^-1((n-s)/n)."""
    s = math.floor(n / 2 + 1) - k
    return statistics.NormalDist().inv_cdf((n - s) / n)


def forge(
    attack: str,
    x: Vector,
    honest: Mapping[str, Vector],
    bad: Sequence[str],
    rng: np.random.Generator,
) -> dict[str, Vector]:
    """Flat forged models for the ``bad`` sites, from the flat global model ``x`` and the flat
    models every site computed honestly."""
    if attack == "sign_flip":
        return {s: x - SIGN_FLIP_BOOST * (honest[s] - x) for s in bad}
    if attack == "scaled":
        return {s: x + SCALE_BOOST * (honest[s] - x) for s in bad}
    if attack == "gaussian":
        return {s: x + rng.normal(0.0, NOISE_STD, size=x.shape) for s in bad}
    if attack == "alie":
        deltas = np.stack([y - x for y in honest.values()])
        forged = x + deltas.mean(axis=0) - alie_z(len(honest), len(bad)) * deltas.std(axis=0)
        return dict.fromkeys(bad, forged)
    raise ConfigError(f"unknown attack {attack!r}; choose from {ATTACKS}")


def make_tamper(attack: str, bad: Sequence[str], seed: int) -> Tamper:
    def tamper(server_round: int, models: Mapping[str, Weights], x: Weights) -> dict[str, Weights]:
        honest = {name: flatten(models[name]) for name in sorted(models)}
        rng = np.random.default_rng([seed, server_round, 0xA77AC])
        forged = forge(attack, flatten(x), honest, bad, rng)
        return {name: _like(vector, x) for name, vector in forged.items()}

    return tamper


def _like(vector: Vector, model: Weights) -> Weights:
    return {k: v.astype(model[k].dtype) for k, v in unflatten(vector, model).items()}


# -- runs ---------------------------------------------------------------------------------------


def aggregator_params(name: str, k: int, max_norm: float) -> dict[str, float]:
    """The registry parameters of aggregator ``name`` sized for ``k`` malicious sites."""
    if name in ("fedavg", "median"):
        return {}
    if name == "trimmed_mean":
        return {"trim": float(k)}
    if name == "krum":
        if 2 * k + 2 >= N_SITES:
            raise ConfigError(f"krum needs n > 2f + 2, got n={N_SITES}, f={k}")
        return {"f": float(k), "m": float(N_SITES - k)}
    if name == "normbound":
        return {"max_norm": max_norm}
    raise ConfigError(f"unknown aggregator {name!r}; choose from {AGGREGATORS}")


def study(setup: Setup, seed: int, strategy: str, params: Mapping[str, float]) -> StudySpec:
    return StudySpec(
        name=f"robustness-{strategy}",
        dataset="heart_disease",
        features=HEART_FEATURES,
        label=HEART_LABEL,
        plan=PLAN[0],
        plan_version=PLAN[1],
        rounds=setup.rounds,
        strategy=strategy,
        strategy_params=dict(params),
        local_epochs=0,
        local_steps=setup.local_steps,
        batch_size=setup.batch_size,
        optimizer="sgd",
        learning_rate=setup.learning_rate,
        min_nodes=N_SITES,
        eval_every=0,
        seed=seed,
    )


def calibrate_max_norm(setup: Setup, seed: int) -> float:
    """The median norm of the honest deltas of round 1, read by a tamper that forges nothing."""
    sites, init = seed_data(seed)
    norms: list[float] = []

    def watch(server_round: int, models: Mapping[str, Weights], x: Weights) -> dict[str, Weights]:
        flat_x = flatten(x)
        norms.extend(float(np.linalg.norm(flatten(m) - flat_x)) for m in models.values())
        return {}

    one_round = dataclasses.replace(setup, rounds=1)
    simulate(study(one_round, seed, "fedavg", {}), sites, init, watch)
    return float(np.median(norms))


@dataclass(frozen=True)
class Cell:
    """One simulation. ``k`` sizes the aggregator and, unless the attack is "none", is the
    number of malicious sites."""

    seed: int
    aggregator: str
    attack: str
    k: int


def run_cell(setup: Setup, cell: Cell, max_norm: float) -> tuple[Metrics, list[float]]:
    """Held-out metrics (accuracy, auc, loss) and the flat final global model."""
    sites, init = seed_data(cell.seed)
    params = aggregator_params(cell.aggregator, cell.k, max_norm)
    bad = sorted(sites)[: cell.k]
    tamper = None if cell.attack == "none" else make_tamper(cell.attack, bad, cell.seed)
    sim = simulate(study(setup, cell.seed, cell.aggregator, params), sites, init, tamper)
    result = get_plan(*PLAN).evaluate(sim.model, held_out())
    return dict(result.metrics), flatten(sim.model).tolist()


def columns(setup: Setup) -> list[tuple[str, int]]:
    """(attack, k) of the printed columns: attack-free first, then every attack x k."""
    return [("none", min(setup.ks))] + [(a, k) for a in setup.attacks for k in setup.ks]


def label(attack: str, k: int) -> str:
    return "none" if attack == "none" else f"{attack} k={k}"


def cells_of(setup: Setup) -> list[Cell]:
    """Every printed cell, plus the attack-free runs each other k's shift is measured from."""
    wanted = [("none", k) for k in setup.ks] + columns(setup)[1:]
    return [
        Cell(seed, aggregator, attack, k)
        for seed in setup.seeds
        for aggregator in setup.aggregators
        for attack, k in wanted
    ]


def _single_thread() -> None:
    import torch

    # A 14-parameter model: intra-op threads only add overhead, and when another process holds a
    # core, their spin-waiting makes a run ~8x slower (measured on 2 CPUs).
    torch.set_num_threads(1)


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """``_single_thread`` for the calling process, undone afterwards (it may be a test run)."""
    import torch

    before = torch.get_num_threads()
    _single_thread()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_table(setup: Setup, workers: int = 1) -> dict[str, Any]:
    """``results[aggregator][label]``: per seed, held-out metrics plus ``shift``."""
    cells = cells_of(setup)
    if workers <= 1:
        with _single_threaded():
            norms = {seed: calibrate_max_norm(setup, seed) for seed in setup.seeds}
            runs = [run_cell(setup, cell, norms[cell.seed]) for cell in cells]
    else:
        context = multiprocessing.get_context("spawn")  # no torch state copied by fork
        with ProcessPoolExecutor(workers, context, initializer=_single_thread) as pool:
            found = pool.map(calibrate_max_norm, [setup] * len(setup.seeds), setup.seeds)
            norms = dict(zip(setup.seeds, found, strict=True))
            maxes = [norms[cell.seed] for cell in cells]
            runs = list(pool.map(run_cell, [setup] * len(cells), cells, maxes))
    final = {cell: np.array(model) for cell, (_, model) in zip(cells, runs, strict=True)}
    results: dict[str, dict[str, list[Metrics]]] = {a: {} for a in setup.aggregators}
    for cell, (metrics, _) in zip(cells, runs, strict=True):
        clean = final[dataclasses.replace(cell, attack="none")]
        shift = float(np.linalg.norm(final[cell] - clean))
        extra = cell.attack == "none" and cell.k != min(setup.ks)  # a reference for shifts
        column = f"none k={cell.k}" if extra else label(cell.attack, cell.k)
        results[cell.aggregator].setdefault(column, []).append(metrics | {"shift": shift})
    return {"results": results, "max_norm": norms}


# -- report -------------------------------------------------------------------------------------


def markdown(
    setup: Setup, results: Mapping[str, Mapping[str, Sequence[Metrics]]], metric: str
) -> str:
    """Rows = aggregator, columns = attack x k, cells = ``metric`` mean ± std over seeds."""
    heads = [label(a, k) for a, k in columns(setup)]
    if metric == "shift":
        heads = heads[1:]
    lines = ["| aggregator | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for aggregator, by_label in results.items():
        shown = [_mean_std([m[metric] for m in by_label[h]]) for h in heads]
        lines.append(f"| {aggregator} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _mean_std(values: Sequence[float]) -> str:
    mean = float(np.mean(values))
    return f"{mean:.3f}" if len(values) < 2 else f"{mean:.3f} ± {float(np.std(values)):.3f}"


def machine() -> str:
    return (
        f"{platform.node()} · {platform.machine()} · {psutil.cpu_count()} CPUs · "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB · Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 3 rounds, k=1, 2 attacks, 2 aggregators"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default: every CPU; 1 if --quick)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else Setup()
    if args.seeds is not None:
        setup = dataclasses.replace(setup, seeds=tuple(args.seeds))
    workers = args.workers or (1 if args.quick else os.cpu_count() or 1)
    started = time.perf_counter()
    result = run_table(setup, workers)
    wall = time.perf_counter() - started
    norms = ", ".join(f"seed {s}: {v:.4f}" for s, v in result["max_norm"].items())
    z = ", ".join(f"k={k}: {alie_z(N_SITES, k):.3f}" for k in setup.ks)
    print(f"Held-out accuracy, {N_SITES} hospitals, {setup.rounds} rounds, seeds {setup.seeds}")
    print(markdown(setup, result["results"], "accuracy"))
    print("\nShift: L2 distance of the final model from the attack-free one (same aggregator)")
    print(markdown(setup, result["results"], "shift"))
    print(f"\nnormbound max_norm: {norms}; ALIE z: {z}")
    print(f"machine: {machine()} · {workers} worker(s) · wall time {wall:.1f} s")
    result |= {"setup": dataclasses.asdict(setup), "wall_s": wall, "machine": machine()}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
