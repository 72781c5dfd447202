from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.compat.approval import ClientApprovals
from medfed.compat.layout import read_safetensors
from medfed.data.heart_disease import export_heart_csvs
from medfed.demo.consortium import create_consortium

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flower"
runner = CliRunner()


def test_approve_client_and_layout_commands(tmp_path: Path) -> None:
    consortium = create_consortium(tmp_path / "c", ["cleveland"])
    config = str(consortium.node_configs["cleveland"])
    script = tmp_path / "heart_numpy_client.py"
    shutil.copyfile(EXAMPLES / script.name, script)
    shutil.copyfile(export_heart_csvs(tmp_path / "csv")["cleveland"], tmp_path / "local.csv")

    approved = runner.invoke(
        root, ["node", "plan", "approve-client", str(script), "--name", "heart", "--config", config]
    )
    assert approved.exit_code == 0, approved.output
    assert approved.output.startswith(f"approved client heart {script}")
    assert ClientApprovals(consortium.node_state("cleveland")).entry("heart").path == str(script)

    init = tmp_path / "init.safetensors"
    layout = runner.invoke(
        root, ["flower", "layout", str(script), "--names", "weight,bias", "--init", str(init)]
    )
    assert layout.exit_code == 0, layout.output
    assert sorted(read_safetensors(init)) == ["bias", "weight"]
    assert '{ name = "weight", shape = [1, 13], dtype = "float32" }' in layout.output
    assert '{ name = "bias", shape = [1], dtype = "float32" }' in layout.output

    revoked = runner.invoke(root, ["node", "plan", "revoke-client", "heart", "--config", config])
    assert (
        revoked.exit_code == 0
        and ClientApprovals(consortium.node_state("cleveland")).approved() == []
    )


def test_flower_run_refuses_an_unapproved_script_with_the_reason(tmp_path: Path) -> None:
    consortium = create_consortium(tmp_path / "c", ["cleveland"])
    script = tmp_path / "client.py"
    script.write_text("import flwr as fl\n")
    result = runner.invoke(
        root, ["flower", "run", str(script), "--config", str(consortium.node_configs["cleveland"])]
    )
    assert result.exit_code == 2
    assert "is not approved by this hospital" in result.output
    assert "approve-client" in result.output


def test_flower_run_refuses_a_changed_script_and_one_that_starts_nothing(tmp_path: Path) -> None:
    consortium = create_consortium(tmp_path / "c", ["cleveland"])
    config = str(consortium.node_configs["cleveland"])
    script = tmp_path / "client.py"
    script.write_text(
        "import sys\nimport flwr as fl\nprint('loaded', fl.__version__, sys.argv[1:])\n"
    )
    ClientApprovals(consortium.node_state("cleveland")).approve(script)

    nothing = runner.invoke(root, ["flower", "run", str(script), "--config", config, "a", "--b"])
    assert nothing.exit_code == 2
    assert "loaded 0+medfed.shim ['a', '--b']" in nothing.output
    assert "finished without calling fl.client.start_numpy_client" in nothing.output

    script.write_text(script.read_text() + "# edited\n")
    changed = runner.invoke(root, ["flower", "run", str(script), "--config", config])
    assert changed.exit_code == 2
    assert "changed since it was approved" in changed.output
