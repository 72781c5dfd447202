from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.coordinator.config import load_client_config, load_coordinator_config
from medfed.node.config import load_node_config

runner = CliRunner()


def test_coordinator_init_writes_a_file_the_coordinator_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["coordinator", "init", "--certs", "coord", "--listen", "0.0.0.0:7443"]
    done = runner.invoke(root, [*args, "--crl", "crl.pem", "--out", "etc/coordinator.toml"])

    assert done.exit_code == 0, done.output
    config = load_coordinator_config(tmp_path / "etc/coordinator.toml")
    assert config.listen == "0.0.0.0:7443"
    assert config.data_dir == tmp_path / "etc/data"
    assert config.tls.cert.resolve() == tmp_path / "coord/coordinator.crt"
    assert config.tls.key.resolve() == tmp_path / "coord/coordinator.key"
    assert config.tls.ca.resolve() == tmp_path / "coord/ca.crt"
    assert config.crl is not None and config.crl.resolve() == tmp_path / "crl.pem"
    assert config.upload_buffers == 2  # commented out in the file: the default


def test_node_init_paths_inside_the_config_folder_stay_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["node", "init", "--name", "cleveland", "--coordinator", "fl.example.org:7443"]
    done = runner.invoke(root, [*args, "--certs", "site/certs", "--out", "site/node.toml"])

    assert done.exit_code == 0, done.output
    text = (tmp_path / "site/node.toml").read_text()
    assert 'cert = "certs/cleveland.crt"' in text
    (tmp_path / "site").rename(tmp_path / "moved")  # the folder can move as a whole
    config = load_node_config(tmp_path / "moved/node.toml")
    assert config.coordinator == "fl.example.org:7443"
    assert config.state_dir == tmp_path / "moved/state"
    assert config.tls.cert == tmp_path / "moved/certs/cleveland.crt"
    assert config.server_name == ""


def test_admin_init_writes_the_config_of_the_study_commands(tmp_path: Path) -> None:
    out = tmp_path / "admin.toml"
    args = ["admin", "init", "--name", "alice", "--coordinator", "fl.example.org:7443"]
    done = runner.invoke(
        root,
        [*args, "--certs", str(tmp_path / "alice"), "--server-name", "coord", "--out", str(out)],
    )

    assert done.exit_code == 0, done.output
    config = load_client_config(out)
    assert config.coordinator == "fl.example.org:7443"
    assert config.server_name == "coord"
    assert config.tls.key == tmp_path / "alice/alice.key"
    assert "does not exist yet" in done.output


def test_init_keeps_an_existing_file_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "admin.toml"
    out.write_text("# mine\n")
    args = ["admin", "init", "--name", "a", "--coordinator", "h:1", "--certs", str(tmp_path)]

    refused = runner.invoke(root, [*args, "--out", str(out)])
    assert refused.exit_code == 2
    assert "exists" in refused.output
    assert out.read_text() == "# mine\n"

    forced = runner.invoke(root, [*args, "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert load_client_config(out).coordinator == "h:1"
