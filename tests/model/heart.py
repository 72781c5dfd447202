"""A heart-disease study trained once per test session by the simulation runner (the node's
exact update and evaluation code), described as the admin API describes a finished study."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

from medfed.cli.study import prepare
from medfed.coordinator.spec import spec_to_proto
from medfed.data.heart_disease import export_heart_csvs, heart_disease_centres
from medfed.demo.heart import heart_study
from medfed.model.bundle import ModelBundle, bundle_from_status
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.simulation.runner import simulate

ROUNDS = 3


@cache
def finished_study() -> tuple[pb.StudyStatus, tensors.Weights, str]:
    """(status, final weights, spec JSON): every site's test metrics as its node computes them."""
    pinned, init = prepare(dataclasses.replace(heart_study(), rounds=ROUNDS))
    sim = simulate(pinned, heart_disease_centres(), init)
    sha = tensors.weights_sha256(sim.model)
    per_node = [
        pb.NodeMetrics(node=site, num_examples=result.num_examples, metrics=result.metrics)
        for site, result in sim.evaluate().items()
    ]
    examples = sum(m.num_examples for m in per_node)
    accuracy = sum(m.metrics["accuracy"] * m.num_examples for m in per_node) / examples
    last = pb.RoundSummary(
        round=ROUNDS,
        model_sha256=sha,
        per_node=per_node,
        metrics={"accuracy": accuracy, "eval_examples": float(examples)},
    )
    earlier = pb.RoundSummary(round=ROUNDS - 1, model_sha256="0" * 64, per_node=per_node[:1])
    status = pb.StudyStatus(
        study_id="study-1",
        spec=spec_to_proto(pinned),
        state="completed",
        completed_rounds=ROUNDS,
        model_sha256=sha,
        rounds=[earlier, last],
    )
    return status, sim.model, pinned.to_json()


def heart_bundle() -> ModelBundle:
    status, weights, spec_json = finished_study()
    return bundle_from_status(status, weights, spec_json)


def site_csvs(folder: Path) -> dict[str, Path]:
    """Each hospital's CSV as it registered it: the 13 features, ``target``, ``split``."""
    return export_heart_csvs(folder)
