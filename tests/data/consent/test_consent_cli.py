"""``medfed node consent`` through Typer's runner, on both stores of a node config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.data.consent import consented_reader
from medfed.data.omop.store import OmopStore

runner = CliRunner()


def _config(tmp_path: Path, store: OmopStore) -> Path:
    location = "" if store.embedded else store.engine.url.render_as_string(hide_password=False)
    if store.embedded:  # the fixture's file is the state_dir's default OMOP file
        assert Path(str(store.engine.url.database)) == tmp_path / "omop.duckdb"
    path = tmp_path / "node.toml"
    path.write_text(
        f'coordinator = "localhost:1"\nstate_dir = "{tmp_path}"\n'
        f'omop_store = "{location}"\nomop_schema = "{store.schema or "cdm"}"\n'
        '[tls]\ncert = "n.crt"\nkey = "n.key"\nca = "ca.crt"\n',
        encoding="utf-8",
    )
    return path


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(root, ["node", "consent", *args])
    return result.exit_code, result.output


def test_grant_revoke_show_and_enable_from_the_command_line(
    store: OmopStore, tmp_path: Path
) -> None:
    config = str(_config(tmp_path, store))

    assert _run("grant", "s1", "p1", "p2", "p3", "--config", config, "--by", "ann") == (
        0, "s1: 3 consented, watermark 3\n")  # fmt: skip
    assert _run("revoke", "s1", "2", "--person-id", "--config", config)[1].startswith(
        "s1: 2 consented, watermark 4"
    )
    code, output = _run("enable", "s1", "--config", config)
    assert code == 0 and ("row-level security on" in output or "consented views" in output)
    code, output = _run("show", "s1", "--config", config, "--json", "--tail", "2")
    document = json.loads(output)
    assert (document["granted"], document["revoked"], document["watermark"]) == (2, 1, 4)
    assert [(e["seq"], e["patient"], e["decision"]) for e in document["log"]] == [
        (3, "p3", "granted"), (4, "p2", "revoked")]  # fmt: skip
    assert document["log"][0]["by"] == "ann"
    code, output = _run("show", "s1", "--config", config)
    assert code == 0 and "2 granted, 1 revoked, watermark 4" in output and "p3" in output
    with consented_reader(store, "s1") as reader:
        assert reader.consented_n == 2


def test_an_unknown_patient_or_a_refused_consent_fails_the_command(
    store: OmopStore, tmp_path: Path
) -> None:
    config = str(_config(tmp_path, store))
    consents = [
        {"resourceType": "Consent", "id": "ok", "status": "active",
         "patient": {"reference": "Patient/p4"}, "provision": {"type": "permit"}},
        {"resourceType": "Consent", "id": "bad", "status": "proposed",
         "patient": {"reference": "Patient/p5"}},
    ]  # fmt: skip
    bundle = {"resourceType": "Bundle", "entry": [{"resource": c} for c in consents]}
    (tmp_path / "c.json").write_text(json.dumps(bundle), encoding="utf-8")

    code, output = _run("grant", "s1", "p1", "nobody", "--config", config)
    assert code == 2 and "nobody" in output
    code, output = _run("import", "s1", str(tmp_path / "c.json"), "--config", config)
    assert code == 1
    assert "recorded 1, refused 1" in output and "c.json#Consent/bad" in output
    assert "s1: 1 consented, watermark 1" in output


@pytest.mark.parametrize("bad", ["x", "1.5"])
def test_person_ids_must_be_numbers(store: OmopStore, tmp_path: Path, bad: str) -> None:
    code, _ = _run("grant", "s1", bad, "--person-id", "--config", str(_config(tmp_path, store)))
    assert code == 2
