"""Write a greyscale radiograph as a DICOM file: CR (Computed Radiography Image Storage) or DX
(Digital X-Ray Image Storage - For Presentation), as a hospital's PACS export would.

Used by ``medfed demo --imaging`` to turn PneumoniaMNIST into hospital DICOM folders, and by
tests. ``Encoding`` varies what a real fleet of scanners varies -- CR or DX, MONOCHROME1, a 12-bit
rescaled representation -- so the connector's display pipeline is exercised end to end. (JPEG 2000
is read, not written: OpenJPEG cannot encode a 28x28 image at its default six resolution levels;
the real JPEG 2000 films in the tests cover decoding.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")


@dataclass(frozen=True)
class Encoding:
    modality: Literal["CR", "DX"] = "CR"
    monochrome1: bool = False
    """Store inverted values, flagged MONOCHROME1 (minimum displayed white)."""
    rescaled: bool = False
    """Store 12-bit values v = 16 p + 8 with Rescale Slope/Intercept mapping back to p."""


@dataclass(frozen=True)
class Patient:
    """Who the image is of: synthetic values only, in demos and tests."""

    patient_id: str
    name: str
    birth_date: str
    sex: Literal["M", "F", "O"]
    institution: str


def radiograph(
    pixels: npt.NDArray[np.uint8], patient: Patient, encoding: Encoding, *, key: str, day: date
) -> Dataset:
    """A complete chest-film data set; UIDs are derived from ``key``, so rewriting is stable."""
    sop_class = CR_STORAGE if encoding.modality == "CR" else DX_STORAGE
    sop_uid = generate_uid(entropy_srcs=[key, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[key, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[key, "series"])
    ds.Modality = encoding.modality
    ds.PatientName, ds.PatientID = patient.name, patient.patient_id
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
    ds.InstitutionName = patient.institution
    ds.StudyDate = ds.ContentDate = day.strftime("%Y%m%d")
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    if encoding.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    _pixels(ds, pixels, encoding)
    return ds


def write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _pixels(ds: Dataset, pixels: npt.NDArray[np.uint8], encoding: Encoding) -> None:
    values = pixels.astype(np.uint16)
    if encoding.monochrome1:
        values = 255 - values
    bits = 8
    if encoding.rescaled:
        values = values * 16 + 8
        bits = 12
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "0.0625", "-0.5", "US"
    ds.Rows, ds.Columns = (int(d) for d in pixels.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if encoding.monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelData = values.astype("<u2").tobytes()
