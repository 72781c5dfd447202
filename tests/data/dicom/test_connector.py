from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medfed.data.dicom import connector
from medfed.data.dicom.connector import DicomSource, scan
from medfed.data.dicom.writer import write
from medfed.data.images import ImageDataset
from medfed.data.registry import DatasetRegistry
from medfed.errors import DatasetError
from tests.data.dicom.conftest import film, write_folder


def _source(folder: Path, labels: Path, **kw: object) -> DicomSource:
    return DicomSource(folder, labels, "label", kw.pop("split", "split"), 16, **kw)  # type: ignore[arg-type]


def test_a_folder_becomes_a_split_image_dataset(tmp_path: Path) -> None:
    labels = write_folder(tmp_path, 12)

    result = scan(_source(tmp_path, labels))

    data = result.dataset
    assert data.features == ("image:1x16x16",)
    assert (len(data.y_train), len(data.y_test)) == (9, 3)
    assert data.x_train.shape == (9, 1, 16, 16) and result.bad == ()
    bright = data.x_train[:, 0, 6:10, 6:10].mean(axis=(1, 2))
    assert np.all((bright > 0.99) == (data.y_train == 1))


def test_without_a_split_column_the_split_is_seeded_and_stratified(tmp_path: Path) -> None:
    labels = write_folder(tmp_path, 20)

    first = scan(_source(tmp_path, labels, split=None)).dataset
    again = scan(_source(tmp_path, labels, split=None)).dataset

    assert len(first.y_test) == 4 and first.y_test.sum() == 2
    np.testing.assert_array_equal(first.x_test, again.x_test)


def test_a_truncated_file_is_reported_by_name_and_can_be_left_out(tmp_path: Path) -> None:
    labels = write_folder(tmp_path, 8)
    broken = tmp_path / "img005.dcm"
    broken.write_bytes(broken.read_bytes()[:300])

    with pytest.raises(DatasetError) as refused:
        scan(_source(tmp_path, labels))
    allowed = scan(_source(tmp_path, labels, allow_bad=True))

    assert "img005.dcm" in str(refused.value) and "--skip-bad" in str(refused.value)
    assert [name for name, _ in allowed.bad] == ["img005.dcm"]
    assert allowed.dataset.rows == 7


def test_a_labelled_file_that_is_missing_is_reported(tmp_path: Path) -> None:
    labels = write_folder(tmp_path, 6)
    (tmp_path / "img002.dcm").unlink()

    with pytest.raises(DatasetError, match=r"img002\.dcm: file not found"):
        scan(_source(tmp_path, labels))


def test_a_file_with_a_patient_name_fails_the_phi_gate_at_registration(tmp_path: Path) -> None:
    labels = write_folder(tmp_path, 6)
    write(film(np.zeros((16, 16), np.uint8), key="raw", clean=False), tmp_path / "img001.dcm")

    with pytest.raises(DatasetError) as refused:
        scan(_source(tmp_path, labels, allow_bad=True))  # --skip-bad does not waive the gate

    message = str(refused.value)
    assert "PHI gate" in message and "img001.dcm" in message and "PatientName" in message
    assert "medfed node dicom deidentify" in message


def test_images_can_be_keyed_by_sop_instance_uid(tmp_path: Path) -> None:
    write_folder(tmp_path, 6)
    import pydicom

    rows = ["sop_instance_uid,label"]
    for i in range(6):
        uid = pydicom.dcmread(tmp_path / f"img{i:03d}.dcm").SOPInstanceUID
        rows.append(f"{uid},{i % 2}")
    (tmp_path / "labels.csv").unlink()
    labels = tmp_path.parent / "by_uid.csv"
    labels.write_text("\n".join(rows) + "\n")

    data = scan(_source(tmp_path, labels, split=None)).dataset

    assert data.rows == 6


def test_a_labels_path_outside_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    write_folder(folder, 4)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n../secret.dcm,1\nimg000.dcm,0\n")

    with pytest.raises(DatasetError, match="points outside"):
        scan(_source(folder, labels, split=None))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name,label\na.dcm,1\n", "key column"),
        ("file,label\nimg000.dcm,2\n", "label must be 0 or 1"),
        ("file,label,split\nimg000.dcm,1,val\n", "split must be train or test"),
        ("file,label\nimg000.dcm,1\nimg000.dcm,0\n", "empty or repeated"),
    ],
)
def test_a_bad_labels_file_names_the_row(tmp_path: Path, content: str, expected: str) -> None:
    write_folder(tmp_path, 2)
    labels = tmp_path / "bad.csv"
    labels.write_text(content)

    with pytest.raises(DatasetError, match=expected):
        scan(_source(tmp_path, labels, split="split" if "split" in content else None))


def test_registered_images_load_from_the_cache_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dicom"
    labels = write_folder(folder, 8)
    registry = DatasetRegistry(tmp_path / "state")
    entry = registry.add_dicom("cxr", _source(folder, labels, allow_bad=True), now=0.0)

    def no_decoding(*_: object, **__: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(connector, "read_radiograph", no_decoding)
    data = registry.load("cxr")

    assert isinstance(data, ImageDataset) and data.rows == entry.rows == 8
    assert registry.get("cxr").features == ("image:1x16x16",)
    assert registry.get("cxr").kind == "dicom"


def test_a_stale_cache_is_decoded_again_and_gives_the_same_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    labels = write_folder(folder, 8)
    registry = DatasetRegistry(tmp_path / "state")
    registry.add_dicom("cxr", _source(folder, labels), now=0.0)
    first = registry.load("cxr")
    for cached in (tmp_path / "state" / "cache" / "cxr").iterdir():
        cached.write_bytes(b"garbage")

    again = registry.load("cxr")

    np.testing.assert_array_equal(first.x_train, again.x_train)


def test_an_image_changed_after_registration_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    labels = write_folder(folder, 8)
    registry = DatasetRegistry(tmp_path / "state")
    registry.add_dicom("cxr", _source(folder, labels), now=0.0)
    shutil.copy(folder / "img001.dcm", folder / "img002.dcm")

    with pytest.raises(DatasetError, match="changed since registration"):
        registry.load("cxr")


def test_removing_a_dicom_dataset_drops_its_cache(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    labels = write_folder(folder, 4)
    registry = DatasetRegistry(tmp_path / "state")
    registry.add_dicom("cxr", _source(folder, labels), now=0.0)

    registry.remove("cxr")

    assert not (tmp_path / "state" / "cache" / "cxr").exists()
    assert registry.list() == []


def test_skipped_files_are_remembered_in_the_registry(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    labels = write_folder(folder, 8)
    (folder / "img003.dcm").write_bytes(b"not dicom")
    registry = DatasetRegistry(tmp_path / "state")

    registry.add_dicom("cxr", _source(folder, labels, allow_bad=True), now=0.0)
    entry = DatasetRegistry(tmp_path / "state").get("cxr")

    assert entry.skipped == ("img003.dcm: not a DICOM file (no 'DICM' marker after the preamble)",)
    assert registry.load("cxr").rows == 7


def test_the_real_radiographs_register_only_after_deidentification(
    samples: Path, tmp_path: Path
) -> None:
    from medfed.data.dicom.deidentify import deidentify_tree

    raw = tmp_path / "export"
    raw.mkdir()
    for name in ("CR_cspine_16x16_6154.dcm", "RG1_J2KI.dcm", "RG3_J2KI.dcm", "CT_small.dcm"):
        shutil.copy(samples / name, raw / name)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nCR_cspine_16x16_6154.dcm,0\nRG1_J2KI.dcm,1\nRG3_J2KI.dcm,0\n"
                      "CT_small.dcm,1\n")  # fmt: skip
    registry = DatasetRegistry(tmp_path / "state")

    with pytest.raises(DatasetError) as gated:
        registry.add_dicom("films", DicomSource(raw, labels, "label", None, 64, True), now=0.0)
    report = deidentify_tree(raw, tmp_path / "research")
    entry = registry.add_dicom(
        "films", DicomSource(tmp_path / "research", labels, "label", None, 64, True), now=0.0
    )

    assert "PHI gate" in str(gated.value) and "RG1_J2KI.dcm" in str(gated.value)
    assert report.written == 4 and report.failed == []
    assert entry.rows == 3  # the CR cervical spine and the two JPEG 2000 films
    assert entry.skipped == ("CT_small.dcm: modality CT is not a radiograph this dataset accepts "
                             "(CR, DX)",)  # fmt: skip
    data = registry.load("films")
    assert isinstance(data, ImageDataset) and data.image_shape == (1, 64, 64)
