"""Flower clients in a 4-hospital study over mTLS (issue 17): the examples' PyTorch and NumPy
clients, as client plans of `medfed node start` and unchanged through `medfed flower run`,
end where the installed logistic_regression plan ends; bad clients fail alone."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import numpy as np

from medfed.cli.study import prepare
from medfed.compat.approval import ClientApprovals
from medfed.compat.layout import CLIENT_PLAN_VERSION
from medfed.coordinator.spec import StudySpec
from medfed.demo.consortium import Consortium
from medfed.demo.processes import spawn, stop_all, wait_for_nodes
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.e2e.harness import HOSPITALS, Network, small_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flower"
TORCH, NUMPY = "heart_torch_client.py", "heart_numpy_client.py"
LAYOUT = (("weight", (1, 13), "float32"), ("bias", (1,), "float32"))
FULL_BATCH = {"batch_size": 1024, "local_epochs": 3}  # every site's training rows in one batch


def install(consortium: Consortium, node: str, example: str, name: str) -> Path:
    """As the hospital would: its client file beside its data (``local.csv``), approved."""
    folder = consortium.node_state(node).parent / "data"
    shutil.copyfile(folder / f"{node}.csv", folder / "local.csv")
    target = folder / example
    shutil.copyfile(EXAMPLES / example, target)
    ClientApprovals(consortium.node_state(node)).approve(target, name)
    return target


def client_study(name: str, plan: str, **changes: object) -> StudySpec:
    spec = small_study(rounds=3, name=name, plan=plan, plan_version=CLIENT_PLAN_VERSION)
    return dataclasses.replace(spec, plan_layout=LAYOUT, **changes)  # type: ignore[arg-type]


def installed_study(name: str, **changes: object) -> StudySpec:
    return small_study(rounds=3, name=name, **changes)


def final_model(network: Network, study_id: str) -> tuple[pb.StudyStatus, dict[str, np.ndarray]]:
    status = network.wait_done(study_id, timeout_s=150)
    assert status.state == "completed", status.message
    assert all(r.accepted == len(HOSPITALS) for r in status.rounds), status.rounds
    return status, network.admin.download(status.model_sha256)


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b) == ["weight", "bias"]
    for key, value in a.items():
        np.testing.assert_allclose(value, b[key], atol=1e-5, rtol=0, err_msg=key)


def test_flower_clients_as_client_plans_match_the_installed_plan(network: Network) -> None:
    assert importlib.util.find_spec("flwr") is None  # the real Flower stays absent
    for node in HOSPITALS:
        install(network.consortium, node, TORCH, "heart_torch")
        install(network.consortium, node, NUMPY, "heart_numpy")
    network.start_coordinator()
    network.start_nodes()
    _, init = prepare(installed_study("init"))  # the installed plan's start, for every study
    studies = {
        "torch": client_study("flower-torch", "heart_torch"),
        "torch_secure": client_study(
            "flower-torch-secure", "heart_torch", secure_aggregation=True, min_nodes=4
        ),
        "reference": installed_study("reference"),
        "numpy": client_study("flower-numpy", "heart_numpy", **FULL_BATCH),
        "reference_full_batch": installed_study("reference-full", **FULL_BATCH),
    }
    ids = {key: network.admin.submit(spec, init) for key, spec in studies.items()}
    results = {key: final_model(network, study_id) for key, study_id in ids.items()}

    assert_same(results["torch"][1], results["reference"][1])
    assert_same(results["torch_secure"][1], results["torch"][1])
    assert_same(results["numpy"][1], results["reference_full_batch"][1])
    assert not np.allclose(results["torch"][1]["weight"], init["weight"])
    # The clients' own evaluation metrics become the study's federated metrics.
    for key in ("torch", "numpy"):
        status = results[key][0]
        metrics = status.rounds[-1].metrics
        reference = results["reference" if key == "torch" else "reference_full_batch"][0]
        assert metrics["accuracy"] == reference.rounds[-1].metrics["accuracy"]
        assert 0 < metrics["loss"] < 1


def test_flower_scripts_run_unchanged_through_the_drop_in_runner(network: Network) -> None:
    """Two hospitals run the PyTorch script, two the NumPy one, each `medfed flower run` in its
    own process; the study (full-batch: both scripts then do the plan's exact math) ends where
    the installed plan ends, which the same node processes also serve."""
    scripts = {}
    for node in HOSPITALS:
        example = TORCH if node in HOSPITALS[:2] else NUMPY
        scripts[node] = install(network.consortium, node, example, "heart")
    network.start_coordinator()
    logs = network.consortium.root / "logs"
    processes = [
        spawn(
            ["flower", "run", str(scripts[n]), "--config", str(network.consortium.node_configs[n])],
            logs / f"{n}.log",
        )
        for n in HOSPITALS
    ]
    try:
        wait_for_nodes(network.admin, HOSPITALS, timeout_s=60)
        _, init = prepare(installed_study("init"))
        flower = network.admin.submit(client_study("drop-in", "heart", **FULL_BATCH), init)
        reference = network.admin.submit(installed_study("reference", **FULL_BATCH), init)
        assert_same(final_model(network, flower)[1], final_model(network, reference)[1])
    finally:
        stop_all(processes, timeout_s=30)
    for node, process in zip(HOSPITALS, processes, strict=True):
        text = " ".join((logs / f"{node}.log").read_text().split())
        assert f"node {node} serves client plan 'heart'" in text, text
        assert "client plan heart stopped" in text, (process.returncode, text[-2000:])
        assert process.returncode == 0, text[-2000:]
