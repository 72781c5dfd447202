from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.data.omop.store import OmopStore
from tests.data.fhir.bundles import LIZ, SYNTHEA, hand_count, write
from tests.store.conftest import POSTGRES_URL

runner = CliRunner()


def _node_config(tmp_path: Path, store: OmopStore) -> Path:
    """A node config pointing at the test's store (the fixture's engine is let go first)."""
    store.close()
    if store.schema:
        location = f'omop_store = "{POSTGRES_URL}"\nomop_schema = "{store.schema}"\n'
    else:
        location = f'omop_store = "{store.engine.url.database}"\n'
    config = tmp_path / "node.toml"
    config.write_text(
        'coordinator = "fl.example.org:7443"\nstate_dir = "state"\n'
        + location
        + '[tls]\ncert = "n.crt"\nkey = "n.key"\nca = "ca.crt"\n'
    )
    return config


def test_init_load_fhir_and_report(omop_store: OmopStore, tmp_path: Path) -> None:
    config = _node_config(tmp_path, omop_store)
    bad = write(tmp_path / "broken.json", "{")

    init = runner.invoke(root, ["node", "omop", "init", "--config", str(config)])
    load = runner.invoke(
        root, ["node", "omop", "load-fhir", str(LIZ), str(bad), "--config", str(config), "--json"]
    )
    report = runner.invoke(root, ["node", "omop", "report", "--config", str(config)])

    assert init.exit_code == 0, init.output
    assert "built-in vocabulary: concept 2301" in init.output
    assert load.exit_code == 1  # a bundle was refused
    document = json.loads(load.stdout)
    assert [b["path"] for b in document["load"]["loaded"]] == [str(LIZ)]
    assert document["load"]["refused"][0]["path"] == str(bad)
    assert "not JSON" in document["load"]["refused"][0]["reason"]
    assert document["quality"]["rows"]["person"] == hand_count(LIZ)["person"]
    assert report.exit_code == 0, report.output
    assert "mapping rate" in report.output and "unmapped source codes" in report.output
    assert "persons: 1, without observation period: 0" in report.output


def test_vocabulary_load_and_import_csv(omop_store: OmopStore, tmp_path: Path) -> None:
    config = _node_config(tmp_path, omop_store)
    folder = tmp_path / "athena"
    folder.mkdir()
    (folder / "DOMAIN.csv").write_text("domain_id\tdomain_name\tdomain_concept_id\nLab\tLab\t0\n")
    export = tmp_path / "export"
    export.mkdir()
    (export / "PERSON.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
        "1,8532,1970,0,0\n"
    )

    vocabulary = runner.invoke(
        root, ["node", "omop", "vocabulary", "load", str(folder), "--config", str(config)]
    )
    imported = runner.invoke(
        root, ["node", "omop", "import-csv", str(export), "--config", str(config)]
    )
    missing = runner.invoke(
        root, ["node", "omop", "import-csv", str(tmp_path / "nowhere"), "--config", str(config)]
    )
    load = runner.invoke(root, ["node", "omop", "load-fhir", str(SYNTHEA), "--config", str(config)])

    assert vocabulary.exit_code == 0, vocabulary.output
    assert "vocabulary loaded: domain 1" in vocabulary.output
    assert imported.exit_code == 0, imported.output
    assert "imported: person 1" in imported.output
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    assert load.exit_code == 0, load.output
    assert "loaded 18 bundle(s)" in load.output and "refused 0" in load.output
