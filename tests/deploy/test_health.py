from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.cli.health import diagnose, local_target
from tests.e2e.harness import Network

runner = CliRunner()


def health(*args: str) -> tuple[int, str]:
    result = runner.invoke(root, ["health", *args])
    return result.exit_code, result.output


def test_coordinator_and_node_healthy_over_mutual_tls(network: Network) -> None:
    network.start_coordinator()
    code, output = health("coordinator", "--config", str(network.consortium.coordinator_config))
    assert code == 0, output
    assert f"to 127.0.0.1:{network.consortium.port}" in output
    node_config = network.consortium.node_configs["cleveland"]
    code, output = health("node", "--config", str(node_config))
    assert code == 0, output
    assert "node reaches its coordinator" in output


def test_unhealthy_when_nothing_serves(network: Network) -> None:
    (network.consortium.coordinator_config.parent / "data").mkdir()
    code, output = health(
        "coordinator", "--config", str(network.consortium.coordinator_config), "--timeout", "0.5"
    )
    assert code == 1
    assert "unhealthy" in output
    assert f"127.0.0.1:{network.consortium.port}" in output
    assert "cannot connect to 127.0.0.1" in output


def test_node_without_its_state_folder_is_refused(network: Network) -> None:
    network.start_coordinator()
    shutil.rmtree(network.consortium.node_state("hungary"))
    code, output = health("node", "--config", str(network.consortium.node_configs["hungary"]))
    assert code == 2
    assert "cannot write in" in output


def test_node_with_another_cas_certificate_is_unhealthy(network: Network, tmp_path: Path) -> None:
    from medfed.pki.ca import CertificateAuthority
    from medfed.pki.identity import Role

    network.start_coordinator()
    stranger = CertificateAuthority.init(tmp_path / "other-ca", "other-consortium")
    certs = network.consortium.node_certs("cleveland")
    for path in certs.iterdir():
        path.unlink()
    stranger.issue("cleveland", Role.NODE, certs)
    node_config = network.consortium.node_configs["cleveland"]
    code, output = health("node", "--config", str(node_config), "--timeout", "1")
    assert code == 1
    assert "unhealthy" in output
    assert "accepts connections, so the TLS handshake failed" in output


def test_diagnosis_names_a_name_that_does_not_resolve() -> None:
    assert "does not resolve" in diagnose("no-such-host.invalid:7443")


def test_local_target_dials_loopback_for_any_address() -> None:
    assert local_target("0.0.0.0:7443") == "127.0.0.1:7443"
    assert local_target("[::]:7443") == "127.0.0.1:7443"
    assert local_target("10.0.0.5:7443") == "10.0.0.5:7443"
