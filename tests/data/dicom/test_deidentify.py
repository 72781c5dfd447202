from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medfed.data.dicom.deidentify import (
    DEIDENTIFICATION_METHOD,
    DeidentifyReport,
    deidentify_dataset,
    deidentify_file,
    deidentify_tree,
)
from medfed.data.dicom.phi import PROFILE, blocking, check_dataset, check_file
from medfed.errors import ConfigError
from tests.data.dicom.test_phi import PIXELS, SAMPLES, by_keyword, cr_dataset, write_cr


def all_tags(ds: Dataset) -> list[int]:
    tags: list[int] = []
    ds.walk(lambda _ds, elem: tags.append(int(elem.tag)))
    return tags


def test_a_named_patient_passes_the_gate_after_deidentify(tmp_path: Path) -> None:
    src = write_cr(tmp_path / "in" / "cr.dcm")
    assert "PatientName" in by_keyword(blocking(check_file(src)))

    deidentify_file(src, tmp_path / "out" / "cr.dcm")

    assert blocking(check_file(tmp_path / "out" / "cr.dcm")) == []


def test_pixel_data_is_unchanged(tmp_path: Path) -> None:
    src = write_cr(tmp_path / "cr.dcm")

    deidentify_file(src, tmp_path / "out.dcm")

    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.PixelData == pydicom.dcmread(src).PixelData
    np.testing.assert_array_equal(out.pixel_array, PIXELS)


def test_identifying_values_are_gone_from_the_written_bytes(tmp_path: Path) -> None:
    src = write_cr(tmp_path / "cr.dcm")

    deidentify_file(src, tmp_path / "out.dcm")

    written = (tmp_path / "out.dcm").read_bytes()
    for value in (b"Doe^John", b"MRN-0042", b"19700101", b"Elsewhere", b"Smith", b"ward 7"):
        assert value in src.read_bytes()
        assert value not in written


def test_private_tags_are_flagged_then_removed() -> None:
    ds = cr_dataset()
    assert any(f.tag == "(0009,1001)" for f in check_dataset(ds))

    deidentify_dataset(ds)

    assert [hex(tag) for tag in all_tags(ds) if (tag >> 16) % 2] == []


def test_a_kept_sequence_is_deidentified_inside() -> None:
    ds = cr_dataset()

    deidentify_dataset(ds)

    step = ds.ScheduledProcedureStepSequence[0]
    assert "ScheduledPerformingPhysicianName" not in step
    assert step.Modality == "CR"


def test_dates_with_action_x_are_removed_not_dummied() -> None:
    """dicom-anonymizer writes 00010101 into an X date; Annex E says remove it."""
    ds = cr_dataset()
    ds.LastMenstrualDate = "20240101"  # Table E.1-1: X
    ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate = "20240102"

    deidentify_dataset(ds)

    assert "LastMenstrualDate" not in ds
    assert "ScheduledProcedureStepStartDate" not in ds.ScheduledProcedureStepSequence[0]


def test_the_profile_is_recorded() -> None:
    ds = cr_dataset()

    deidentify_dataset(ds)

    assert ds.PatientIdentityRemoved == "YES"
    assert list(ds.DeidentificationMethod) == list(DEIDENTIFICATION_METHOD)
    assert all(part in PROFILE and len(part) <= 64 for part in DEIDENTIFICATION_METHOD)
    code = ds.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert code.CodeMeaning == "Basic Application Confidentiality Profile"


def test_uids_are_replaced_consistently_with_the_file_meta(tmp_path: Path) -> None:
    src = write_cr(tmp_path / "cr.dcm")
    before = pydicom.dcmread(src).SOPInstanceUID

    deidentify_file(src, tmp_path / "out.dcm")

    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.SOPInstanceUID != before
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_burned_in_annotation_yes_stays_blocked(tmp_path: Path) -> None:
    src = write_cr(tmp_path / "cr.dcm", BurnedInAnnotation="YES")

    deidentify_file(src, tmp_path / "out.dcm")

    stops = blocking(check_file(tmp_path / "out.dcm"))
    assert [f.keyword for f in stops] == ["BurnedInAnnotation"]


def test_a_tree_is_mirrored_and_broken_files_are_reported_by_name(tmp_path: Path) -> None:
    src = tmp_path / "export"
    write_cr(src / "a.dcm")
    write_cr(src / "series" / "b.dcm")
    (src / "series" / "notes.txt").write_text("not an image\n")
    whole = (src / "a.dcm").read_bytes()
    (src / "series" / "cut.dcm").write_bytes(whole[: len(whole) - 100])

    report = deidentify_tree(src, tmp_path / "clean")

    assert report.written == 2
    assert sorted(path.name for path, _ in report.failed) == ["cut.dcm", "notes.txt"]
    reasons = dict((path.name, reason) for path, reason in report.failed)
    assert reasons["notes.txt"].startswith("not a readable DICOM file")
    assert reasons["cut.dcm"].startswith("truncated: (7FE0,0010) ends at byte")
    for name in ("a.dcm", "series/b.dcm"):
        assert blocking(check_file(tmp_path / "clean" / name)) == []
    assert (src / "a.dcm").read_bytes() == whole
    assert not (tmp_path / "clean" / "series" / "notes.txt").exists()


@pytest.mark.parametrize("dst", [".", "inside", "inside/deeper", ".."], ids=str)
def test_the_output_may_not_overlap_the_input(tmp_path: Path, dst: str) -> None:
    src = tmp_path / "export"
    write_cr(src / "a.dcm")

    with pytest.raises(ConfigError, match="overlap"):
        deidentify_tree(src, src / dst)

    assert [p.name for p in src.rglob("*")] == ["a.dcm"]


def test_a_file_is_never_written_over_itself(tmp_path: Path) -> None:
    src = write_cr(tmp_path / "cr.dcm")
    (tmp_path / "sub").mkdir()

    with pytest.raises(ConfigError, match="overwrite the input"):
        deidentify_file(src, tmp_path / "sub" / ".." / "cr.dcm")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_the_real_samples_pass_after_deidentify(sample: Path, tmp_path: Path) -> None:
    deidentify_file(sample, tmp_path / sample.name)

    assert blocking(check_file(tmp_path / sample.name)) == []
    before, after = pydicom.dcmread(sample), pydicom.dcmread(tmp_path / sample.name)
    assert after.get("PixelData") == before.get("PixelData")


def test_deidentify_report_lists_nothing_for_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    report = deidentify_tree(tmp_path / "empty", tmp_path / "out")

    assert report == DeidentifyReport(written=0, failed=[])
