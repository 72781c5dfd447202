"""The council over mTLS: m-of-n votes recorded in the ledger, rules enforced by the coordinator
at submission and by every hospital from its own replay of the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.demo.consortium import add_admin
from medfed.errors import MedfedError
from medfed.ledger.chain import verify_entries
from medfed.ledger.entry import parse_line
from medfed.ledger.keys import load_ca
from tests.e2e.harness import HOSPITALS, Network, small_study

runner = CliRunner()


def _council(network: Network) -> dict[str, Path]:
    """Three council members (2 to pass) and one admin who is not on the council."""
    configs = {"researcher": network.consortium.admin_config}
    for name in ("ethics", "dpo", "outsider"):
        configs[name] = add_admin(network.consortium, name)
    path = network.consortium.coordinator_config
    path.write_text('council = "researcher,ethics,dpo"\ncouncil_threshold = 2\n' + path.read_text())
    return configs


def _cli(*args: str) -> str:
    result = runner.invoke(root, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_council_caps_epsilon_and_every_hospital_enforces_it(network: Network) -> None:
    admins = _council(network)
    network.start_coordinator()
    early = network.submit(small_study(rounds=1, eval_every=0))  # no DP: accepted for now

    chair = str(admins["researcher"])
    said = _cli("governance", "propose", "set_max_epsilon", "--max-epsilon", "1.0",
                "--reason", "ethics board decision", "--config", chair)  # fmt: skip
    assert "proposal 1" in said and "open" in said
    refused = runner.invoke(root, ["governance", "vote", "1", "yes", "--config",
                                   str(admins["outsider"])])  # fmt: skip
    assert refused.exit_code == 2 and "not on the council" in refused.output
    assert "is open" in _cli(
        "governance", "vote", "1", "yes", "--config", str(admins["researcher"])
    )
    # m - 1 = 1 yes vote: nothing changed yet
    assert json.loads(network.admin.govern().state_json)["rules"]["max_epsilon"] is None
    assert "passed" in _cli("governance", "vote", "1", "yes", "--config", str(admins["ethics"]))
    state = json.loads(network.admin.govern().state_json)
    assert state["rules"]["max_epsilon"] == 1.0 and state["rules"]["set_by"] == {"max_epsilon": 1}

    with pytest.raises(MedfedError, match="council allows at most ε = 1"):
        network.submit(small_study(rounds=1, eval_every=0))

    # the study accepted before the rule passed is forced through: the hospitals refuse it
    network.start_nodes()
    network.wait_until(early, lambda s: len(network.rejections(early)) >= len(HOSPITALS))
    reasons = network.rejections(early)
    assert all("epsilon_above_cap" in r and "at most ε = 1" in r for r in reasons), reasons
    network.admin.cancel(early, "refused by the hospitals")

    lines = network.admin.ledger()
    verifier = verify_entries(
        [parse_line(x) for x in lines], load_ca(network.consortium.ca_dir / "ca.crt")
    )
    assert verifier.governance.rules.max_epsilon == 1.0
    shown = _cli("governance", "show", "--config", str(admins["dpo"]))
    assert "ethics board decision" in shown and "passed" in shown
