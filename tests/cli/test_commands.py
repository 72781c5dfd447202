from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.demo.heart import STUDY_SPEC
from tests.e2e.harness import Network

runner = CliRunner()


def _invoke(*args: str) -> str:
    result = runner.invoke(root, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_data_steward_commands(network: Network, tmp_path: Path) -> None:
    config = str(network.consortium.node_configs["cleveland"])
    csv = next((network.consortium.node_state("cleveland").parent / "data").glob("*.csv"))

    added = _invoke(
        "node", "dataset", "add", "local_copy", "--config", config,
        "--csv", str(csv), "--label", "target", "--split-column", "split",
    )  # fmt: skip
    listed = _invoke("node", "dataset", "list", "--config", config)
    approved = _invoke("node", "plan", "approve", "mlp", "1", "--config", config)
    plans = _invoke("node", "plan", "list", "--config", config)
    removed = _invoke("node", "dataset", "remove", "local_copy", "--config", config)

    assert "registered local_copy: 303 rows, 13 features" in added
    assert "local_copy" in listed
    assert approved.startswith("approved mlp 1 sha256 ")
    assert "mlp" in plans and "yes" in plans
    assert "removed local_copy" in removed


def test_a_bad_dataset_is_refused_with_one_clear_line(network: Network, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("age,target\n61,1\nsixty,0\n")
    config = str(network.consortium.node_configs["cleveland"])

    result = runner.invoke(
        root,
        [
            "node",
            "dataset",
            "add",
            "bad",
            "--config",
            config,
            "--csv",
            str(bad),
            "--label",
            "target",
        ],
    )

    assert result.exit_code == 2
    assert "error:" in result.output
    assert "sixty" in result.output or "row" in result.output


def test_researcher_commands_against_a_running_coordinator(
    network: Network, tmp_path: Path
) -> None:
    network.start_coordinator()
    network.start_nodes()
    admin = str(network.consortium.admin_config)
    spec = tmp_path / "study.toml"
    spec.write_text(STUDY_SPEC.read_text().replace("rounds = 20", "rounds = 2"))
    assert tomllib.loads(spec.read_text())["rounds"] == 2

    nodes = _invoke("study", "nodes", "--config", admin)
    study_id = _invoke("study", "submit", str(spec), "--config", admin).strip()
    network.wait_done(study_id, timeout_s=60)
    status = _invoke("study", "status", study_id, "--config", admin)
    listed = _invoke("study", "list", "--config", admin)
    model = tmp_path / "model.safetensors"
    _invoke("study", "download", study_id, "--config", admin, "--out", str(model))

    assert "cleveland" in nodes and "yes" in nodes
    assert study_id.startswith("s-")
    assert "completed" in status
    assert f"{study_id}  heart-disease-demo  completed  2/2" in listed
    assert model.stat().st_size > 0


def test_study_strategies_lists_every_strategy_and_what_secure_aggregation_refuses():
    from medfed.strategies.registry import STRATEGY_NAMES

    result = runner.invoke(root, ["study", "strategies"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert set(STRATEGY_NAMES) <= set(lines)
    for name in ("median", "trimmed_mean", "krum"):
        assert "refused" in lines[name]
    for name in ("fedavg", "scaffold", "normbound"):
        assert "composes" in lines[name]


def test_the_data_steward_sets_and_reads_a_privacy_budget(network: Network) -> None:
    config = str(network.consortium.node_configs["cleveland"])
    csv = next((network.consortium.node_state("cleveland").parent / "data").glob("*.csv"))

    added = _invoke(
        "node", "dataset", "add", "dp_copy", "--config", config, "--csv", str(csv),
        "--label", "target", "--split-column", "split", "--epsilon-budget", "1.0",
        "--delta", "1e-5",
    )  # fmt: skip
    shown = _invoke("node", "privacy", "show", "dp_copy", "--config", config)
    raised = _invoke("node", "privacy", "budget", "dp_copy", "--epsilon", "2.5", "--config", config)
    again = _invoke("node", "privacy", "show", "dp_copy", "--config", config)
    missing = _invoke("node", "privacy", "show", "nothing", "--config", config)

    assert "registered dp_copy" in added
    assert "spent 0.0000 of 1" in shown
    assert "epsilon budget 2.5" in raised
    assert "spent 0.0000 of 2.5" in again
    assert "no privacy budget set" in missing


def test_researcher_encrypts_evaluation_with_a_key_only_they_hold(
    network: Network, tmp_path: Path
) -> None:
    key = tmp_path / "researcher.ckks"
    assert "public fingerprint" in _invoke("study", "keygen", str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(root, ["study", "keygen", str(key)])
    assert again.exit_code != 0  # never overwrites a key

    network.start_coordinator()
    network.start_nodes()
    config = str(network.consortium.admin_config)
    spec = tmp_path / "study.toml"
    spec.write_text(STUDY_SPEC.read_text().replace("rounds = ", "rounds = 1 #", 1))
    study_id = _invoke(
        "study", "submit", str(spec), "--config", config, "--encrypt-metrics", str(key)
    ).strip()
    assert network.wait_done(study_id, timeout_s=120).state == "completed"
    shown = runner.invoke(
        root, ["study", "decrypt", study_id, "--config", config, "--key", str(key)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "encrypted evaluation (CKKS)" in shown.output and "accuracy" in shown.output
