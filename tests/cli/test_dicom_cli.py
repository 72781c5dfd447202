from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.dicom import app
from medfed.data.dicom.phi import PROFILE
from tests.data.dicom.test_phi import write_cr
from tests.e2e.harness import Network

runner = CliRunner()


def test_check_blocks_a_named_patient(tmp_path: Path) -> None:
    path = write_cr(tmp_path / "cr.dcm")

    result = runner.invoke(app, ["check", str(path)])

    assert result.exit_code == 1, result.output
    assert f"profile: {PROFILE}" in result.output
    assert "cr.dcm: blocked," in result.output
    assert "PatientName" in result.output and "(0010,0010)" in result.output
    assert "1 file(s) checked, 1 blocked" in result.output


def test_deidentify_then_check_passes(tmp_path: Path) -> None:
    write_cr(tmp_path / "export" / "a.dcm")
    write_cr(tmp_path / "export" / "series" / "b.dcm")

    done = runner.invoke(app, ["deidentify", str(tmp_path / "export"), str(tmp_path / "clean")])
    checked = runner.invoke(app, ["check", str(tmp_path / "clean")])

    assert done.exit_code == 0, done.output
    assert "wrote 2 file(s)" in done.output and "0 failed" in done.output
    assert checked.exit_code == 0, checked.output
    assert "2 file(s) checked, 0 blocked" in checked.output


def test_a_broken_file_in_a_folder_is_named_by_both_commands(tmp_path: Path) -> None:
    write_cr(tmp_path / "export" / "a.dcm")
    (tmp_path / "export" / "readme.txt").write_text("exported from PACS\n")

    done = runner.invoke(app, ["deidentify", str(tmp_path / "export"), str(tmp_path / "clean")])
    checked = runner.invoke(app, ["check", str(tmp_path / "export")])

    assert done.exit_code == 1
    assert "wrote 1 file(s)" in done.output and "1 failed" in done.output
    assert "readme.txt: not a readable DICOM file" in done.output
    assert checked.exit_code == 1
    assert "unreadable" in checked.output and "readme.txt" in checked.output


def test_deidentify_refuses_an_output_inside_the_input(tmp_path: Path) -> None:
    write_cr(tmp_path / "export" / "a.dcm")

    result = runner.invoke(
        app, ["deidentify", str(tmp_path / "export"), str(tmp_path / "export" / "clean")]
    )

    assert result.exit_code == 2
    assert "overlap" in result.output
    assert not (tmp_path / "export" / "clean").exists()


def test_a_data_steward_registers_a_dicom_folder(network: Network, tmp_path: Path) -> None:
    from medfed.cli.app import root
    from tests.data.dicom.conftest import write_folder

    config = str(network.consortium.node_configs["cleveland"])
    folder = tmp_path / "cxr"
    labels = write_folder(folder, 8)
    (folder / "img004.dcm").write_bytes((folder / "img004.dcm").read_bytes()[:200])
    args = ["node", "dataset", "add", "cxr", "--config", config, "--dicom", str(folder),
            "--labels", str(labels), "--split-column", "split", "--image-size", "16"]  # fmt: skip

    refused = CliRunner().invoke(root, args)
    added = CliRunner().invoke(root, [*args, "--skip-bad"])
    listed = CliRunner().invoke(root, ["node", "dataset", "list", "--config", config])

    assert refused.exit_code == 2 and "img004.dcm" in refused.output
    assert added.exit_code == 0, added.output
    assert "registered cxr: 7 rows, image:1x16x16" in added.output
    assert "left out: img004.dcm" in added.output
    assert "dicom" in listed.output and "image:1x16x16" in listed.output


def test_dataset_add_needs_exactly_one_source(network: Network) -> None:
    from medfed.cli.app import root

    config = str(network.consortium.node_configs["cleveland"])

    neither = CliRunner().invoke(root, ["node", "dataset", "add", "x", "--config", config])
    no_labels = CliRunner().invoke(
        root, ["node", "dataset", "add", "x", "--config", config, "--dicom", "."]
    )

    assert neither.exit_code == 2 and "exactly one of --csv" in neither.output
    assert no_labels.exit_code == 2 and "--dicom needs --labels" in no_labels.output
