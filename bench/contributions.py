"""Contributions on the heart study: GTG-Shapley against exact Shapley and leave-one-out, with
one hospital's labels replaced by pure noise.

    python bench/contributions.py [--rounds 4] [--noisy hungary]

Runs the study in one process (medfed.simulation, the network's exact node and strategy code) and
prints, per method: each hospital's contribution summed over the rounds (federated AUC points),
its reputation, its share of 1,000 reward points, the coalition evaluations needed and the time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine
from medfed.cli.study import prepare
from medfed.data.heart_disease import heart_disease_centres
from medfed.demo.heart import heart_study
from medfed.governance.reputation import reputations
from medfed.governance.rewards import study_rewards
from medfed.simulation.contributions import noisy_labels, simulate_with_contributions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--noisy", default="hungary")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    sites = heart_disease_centres()
    sites[args.noisy] = noisy_labels(sites[args.noisy], np.random.default_rng(7))
    spec, init = prepare(dataclasses.replace(heart_study(), rounds=args.rounds))
    print(f"{len(sites)} hospitals, {args.rounds} rounds, {args.noisy}'s labels are pure noise")
    print("| method | hospital | contribution (AUC) | reputation | reward points | "
          "evaluations | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for method in ("exact", "gtg", "leave_one_out"):
        start = time.perf_counter()
        run = simulate_with_contributions(spec, sites, init, np.random.default_rng(0),
                                          method=method)  # fmt: skip
        seconds = time.perf_counter() - start
        totals = run.totals()
        found = reputations(run.site_rounds())
        points = study_rewards(1000, [r.values for r in run.rounds])
        evaluations = sum(r.evaluations for r in run.rounds)
        for site in sorted(totals):
            print(f"| {method} | {site} | {totals[site]:+.3f} | {found[site].score:.3f} | "
                  f"{points[site]} | {evaluations} | {seconds:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
