from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.dicom import app
from medfed.data.dicom.phi import PROFILE
from tests.data.dicom.test_phi import write_cr

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
