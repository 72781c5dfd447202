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
from medfed.data.heart_disease import heart_disease_centres
from medfed.demo.consortium import Consortium
from medfed.demo.processes import spawn, stop_all, wait_for_nodes
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.simulation.runner import simulate
from tests.e2e.harness import HOSPITALS, Network, small_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flower"
TORCH, NUMPY = "heart_torch_client.py", "heart_numpy_client.py"
LAYOUT = (("weight", (1, 13), "float32"), ("bias", (1,), "float32"))
STRATEGIES: dict[str, dict[str, object]] = {
    "fedprox": {"strategy": "fedprox", "strategy_params": {"mu": 0.5}},
    "fedadam": {"strategy": "fedadam", "strategy_params": {"server_learning_rate": 0.05}},
    "median": {"strategy": "median"},
    "dpfedavg": {
        "strategy": "dpfedavg",
        "strategy_params": {"clip_norm": 0.5, "noise_multiplier": 0.3, "distributed": 1.0},
    },
}
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
    for key, params in STRATEGIES.items():
        studies[key] = client_study(f"flower-{key}", "heart_torch", **params)
    ids = {key: network.admin.submit(spec, init) for key, spec in studies.items()}
    results = {key: final_model(network, study_id) for key, study_id in ids.items()}

    # Server-side strategies act on the returned arrays: FedProx's term is the client's (the
    # example adds it from config["proximal_mu"]); the installed plan, simulated, is the reference.
    centres = heart_disease_centres()
    for key, params in STRATEGIES.items():
        if key != "dpfedavg":
            expected = simulate(installed_study(key, **params), centres, init).model
            assert_same(results[key][1], expected)
    assert all(r.metrics["client_epsilon"] > 0 for r in results["dpfedavg"][0].rounds)

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
        # Stopped by SIGTERM, the runner returned from the script and said so. (Its exit code is
        # not checked: stop_all signals twice, and a second SIGTERM during interpreter teardown,
        # after Python has restored the default handler, reads as -15.)
        assert "client plan heart stopped" in text, (process.returncode, text[-2000:])


MISBEHAVING = '''
import flwr as fl
import numpy as np


class Misbehaving(fl.client.NumPyClient):
    """config["bad"]: 0 behaves, 1 one array too few, 2 a transposed shape, 3 NaN, 4 raises."""

    def fit(self, parameters, config):
        bad = int(config["bad"])
        out = [p + np.float32(0.01) for p in parameters]
        if bad == 1:
            out = out[:1]
        if bad == 2:
            out[0] = out[0].T
        if bad == 3:
            out[1][0] = np.nan
        if bad == 4:
            raise RuntimeError("the GPU is on fire")
        return out, 10, {}

    def evaluate(self, parameters, config):
        return 0.5, 10, {"accuracy": 0.5}


fl.client.start_numpy_client(server_address="[::]:8080", client=Misbehaving())
'''
BAD_REASONS = {
    1: "returned 1 arrays; the study's layout has 2 (weight, bias)",
    2: "returned shape (13, 1) for 'weight'; the study's layout says (1, 13)",
    3: "returned NaN or infinity in 'bias'",
    4: "fit raised RuntimeError('the GPU is on fire')",
}


def _refusals(status: pb.StudyStatus, node: str) -> list[str]:
    return [r for r in status.rounds[0].rejections if r.startswith(f"{node}: ")]


def test_bad_unapproved_and_changed_clients_are_refused_alone_with_the_reason(
    network: Network,
) -> None:
    consortium = network.consortium
    bad = consortium.node_state("cleveland").parent / "data" / "misbehaving.py"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(MISBEHAVING)
    ClientApprovals(consortium.node_state("cleveland")).approve(bad, "heart")
    for node in HOSPITALS:
        if node != "cleveland":
            install(consortium, node, NUMPY, "heart")
            install(consortium, node, NUMPY, "heart_partial")  # not approved at cleveland
        install(consortium, node, TORCH, "heart_changed")
    hungary = consortium.node_state("hungary").parent / "data" / TORCH
    hungary.write_text(hungary.read_text() + "# edited after approval\n")
    network.start_coordinator()
    network.start_nodes()

    def study(name: str, plan: str, bad_mode: int = 0) -> str:
        spec = client_study(name, plan, rounds=1, plan_options={"bad": float(bad_mode)})
        return network.admin.submit(*prepare(spec))

    ids = {mode: study(f"bad-{mode}", "heart", mode) for mode in BAD_REASONS}
    partial, changed = study("partial", "heart_partial"), study("changed", "heart_changed")
    for mode, study_id in ids.items():
        status = network.wait_done(study_id, timeout_s=90)
        assert status.state == "completed", status.message
        assert status.rounds[0].accepted == 3  # the round went on without cleveland
        [refusal] = _refusals(status, "cleveland")
        assert refusal.startswith("cleveland: refused (task_failed)"), refusal
        assert BAD_REASONS[mode] in refusal, refusal
    [unapproved] = _refusals(network.wait_done(partial, timeout_s=90), "cleveland")
    assert "refused (plan_not_approved)" in unapproved and "approve-client" in unapproved
    [edited] = _refusals(network.wait_done(changed, timeout_s=90), "hungary")
    assert "refused (plan_changed)" in edited and "changed since it was approved" in edited

    # The same node, after all that, still serves: its well-behaved answer is accepted.
    status = network.wait_done(study("good", "heart"), timeout_s=90)
    assert status.state == "completed", status.message
    assert status.rounds[0].accepted == len(HOSPITALS), list(status.rounds[0].rejections)
