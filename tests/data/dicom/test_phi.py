from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from dicomanonymizer import simpledicomanonymizer as library
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from medfed.data.dicom.phi import (
    PROFILE,
    PROFILE_EDITION,
    PhiFinding,
    annex_e_action,
    blocking,
    check_dataset,
    check_file,
)
from medfed.errors import DatasetError

SAMPLES = sorted((Path(__file__).resolve().parent / "samples").glob("*.dcm"))
PIXELS = np.arange(256, dtype=np.uint16).reshape(16, 16) * 16


def cr_dataset() -> FileDataset:
    """A small CR image as a hospital PACS would export it: named, dated, with a private tag
    and a physician's name one sequence down."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["medfed", "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("cr.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["medfed", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["medfed", "series"])
    ds.Modality, ds.BodyPartExamined, ds.BurnedInAnnotation = "CR", "CHEST", "NO"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^John", "MRN-0042", "19700101"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.private_block(0x0009, "ACME PACS 1.0", create=True).add_new(0x01, "LO", "ward 7, bed 3")
    step = Dataset()
    step.Modality = "CR"
    step.ScheduledPerformingPhysicianName = "Smith^Jane"
    ds.ScheduledProcedureStepSequence = Sequence([step])
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = PIXELS.tobytes()
    return ds


def write_cr(path: Path, **changes: str) -> Path:
    ds = cr_dataset()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def by_keyword(findings: list[PhiFinding]) -> dict[str, PhiFinding]:
    return {finding.keyword: finding for finding in findings}


def test_a_named_patient_is_blocked_with_a_readable_message() -> None:
    findings = by_keyword(check_dataset(cr_dataset()))

    assert str(findings["PatientName"]) == (
        "(0010,0010) PatientName: identifying attribute still filled ('Doe^John'); Annex E action Z"
    )
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName"):
        assert findings[keyword].blocking, keyword


def test_uids_and_unlisted_attributes_are_not_findings() -> None:
    keywords = by_keyword(check_dataset(cr_dataset()))

    assert not {"SOPInstanceUID", "StudyInstanceUID", "Modality", "PixelData"} & set(keywords)


def test_private_tags_are_blocking() -> None:
    findings = [f for f in check_dataset(cr_dataset()) if f.tag.startswith("(0009,")]

    assert {f.tag for f in findings} == {"(0009,0010)", "(0009,1001)"}
    assert all(f.blocking and "private attribute present" in f.reason for f in findings)


def test_an_attribute_nested_in_a_sequence_is_found_with_its_path() -> None:
    finding = by_keyword(check_dataset(cr_dataset()))["ScheduledPerformingPhysicianName"]

    assert finding.blocking
    assert "('Smith^Jane') in ScheduledProcedureStepSequence[0]" in finding.reason
    assert finding.reason.endswith("Annex E action X")


def test_values_shown_are_cut_to_16_characters() -> None:
    ds = cr_dataset()
    ds.PatientName = "Verylongfamilyname^Verylonggivenname"

    reason = by_keyword(check_dataset(ds))["PatientName"].reason

    assert "('Verylongfamilyna...')" in reason
    assert "Verylongfamilynam" not in reason


def test_repeating_group_attributes_are_matched_by_mask() -> None:
    ds = cr_dataset()
    ds.add_new(0x60024000, "LT", "reading room note")

    finding = next(f for f in check_dataset(ds) if f.tag == "(6002,4000)")

    assert annex_e_action(ds[0x60024000].tag) == "X"
    assert finding.blocking and "to be removed" in finding.reason


def _tag_with_vr(vr: str) -> int:
    return next(
        tag
        for tag, (entry_vr, vm, _, retired, keyword) in DicomDictionary.items()
        if entry_vr == vr and vm == "1" and not retired and keyword and 0x0008 <= tag >> 16 < 0x6000
    )


REAL_VALUES: dict[str, object] = {
    **dict.fromkeys(("AE", "CS", "SH"), "PACS7"),
    **dict.fromkeys(("LO", "LT", "PN", "ST", "UC", "UT"), "Doe^John"),
    "AS": "042Y", "UR": "http://pacs.example/1", "DS": "1.5", "IS": "7",
    "DA": "20240102", "DT": "20240102030405", "TM": "030405",
    **dict.fromkeys(("FD", "FL", "SL", "SS", "UL", "US"), 7),
    "OB": b"secret", "UN": b"secret",
}  # fmt: skip


@pytest.mark.parametrize("blank", [library.replace, library.empty], ids=["D", "Z"])
def test_the_gate_accepts_exactly_what_the_library_writes(
    blank: Callable[[Dataset, tuple[int, int]], None],
) -> None:
    """Reference check: fill a Z/D sequence with one real value per VR; every one is a finding
    until the library's own D or Z action has run over it, and none after."""
    item = Dataset()
    for vr, value in REAL_VALUES.items():
        item.add(DataElement(_tag_with_vr(vr), vr, value))
    ds = Dataset()
    ds.ContentSequence = Sequence([item])  # Table E.1-1: D
    assert {f.tag for f in check_dataset(ds) if "ContentSequence[0]" in f.reason} == {
        f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag in list(item.keys())
    }

    blank(ds, (0x0040, 0xA730))

    assert [f for f in check_dataset(ds) if "ContentSequence" in f.reason] == []


def test_patient_identity_removed_must_say_yes() -> None:
    ds = cr_dataset()
    assert "PatientIdentityRemoved" in by_keyword(blocking(check_dataset(ds)))
    ds.PatientIdentityRemoved = "NO"
    assert "is 'NO'" in by_keyword(check_dataset(ds))["PatientIdentityRemoved"].reason
    ds.PatientIdentityRemoved = "YES"
    assert "PatientIdentityRemoved" not in by_keyword(check_dataset(ds))


def test_burned_in_annotation_yes_blocks_and_absent_is_a_note() -> None:
    ds = cr_dataset()
    assert "BurnedInAnnotation" not in by_keyword(check_dataset(ds))
    ds.BurnedInAnnotation = "YES"
    assert by_keyword(check_dataset(ds))["BurnedInAnnotation"].blocking
    del ds.BurnedInAnnotation
    note = by_keyword(check_dataset(ds))["BurnedInAnnotation"]
    assert not note.blocking and "not attested free of burned-in text" in note.reason


def test_check_file_reads_a_written_file(tmp_path: Path) -> None:
    path = write_cr(tmp_path / "cr.dcm")

    def summary(findings: list[PhiFinding]) -> set[tuple[str, bool]]:
        return {(f.tag, f.blocking) for f in findings}

    assert summary(check_file(path)) == summary(check_dataset(cr_dataset()))


def test_a_file_that_is_not_dicom_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("patient called back on Monday\n")

    with pytest.raises(DatasetError, match=r"notes\.txt: not a readable DICOM file"):
        check_file(path)


PIXEL_ELEMENT = 12 + PIXELS.nbytes  # explicit VR OW: tag, VR, reserved, 4-byte length


@pytest.mark.parametrize(
    ("keep", "reason"),
    [
        (100, r"not a readable DICOM file \(File is missing DICOM File Meta"),
        (200, r"truncated: no data set after the file meta header"),
        (400, r"truncated: \(0008,0018\) ends at byte \d+, the file at byte 400"),
        (-PIXEL_ELEMENT, r"truncated: image attributes \(Rows\) but no pixel data"),
        (-PIXEL_ELEMENT + 3, r"truncated: 3 stray byte\(s\) after the last element"),
        (-100, r"truncated: \(7FE0,0010\) ends at byte \d+, the file at byte \d+"),
    ],
    ids=["preamble", "meta", "header", "before-pixels", "pixel-header", "pixels"],
)
def test_a_truncated_file_is_refused_by_name(tmp_path: Path, keep: int, reason: str) -> None:
    """pydicom reads a cut file without complaint; the gate must not."""
    data = write_cr(tmp_path / "whole.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:keep])

    with pytest.raises(DatasetError, match=rf"cut\.dcm: {reason}"):
        check_file(path)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_the_real_samples_are_not_deidentified(sample: Path) -> None:
    findings = check_file(sample)

    assert "PatientName" in by_keyword(blocking(findings))


def test_rg1_names_its_patient() -> None:
    sample = next(p for p in SAMPLES if p.name == "RG1_J2KI.dcm")

    reason = by_keyword(check_file(sample))["PatientName"].reason

    assert "('CompressedSample...')" in reason


def test_the_profile_names_the_pinned_tables() -> None:
    assert PROFILE_EDITION == "2026c" and "2026c" in PROFILE and "2.1.0" in PROFILE
    assert importlib.metadata.version("dicom-anonymizer") == "2.1.0"
