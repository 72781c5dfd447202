from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from medfed.data.dicom.deidentify import deidentify_dataset
from medfed.data.dicom.writer import Encoding, Patient, radiograph, write

SAMPLES = Path(__file__).resolve().parent / "samples"
PATIENT = Patient("MRN-0001", "Doe^Jane", "19800101", "F", "General Hospital")


def film(
    pixels: np.ndarray, *, key: str = "k", encoding: Encoding | None = None, clean: bool = True
) -> Dataset:
    ds = radiograph(pixels, PATIENT, encoding or Encoding(), key=key, day=date(2024, 5, 1))
    if clean:
        deidentify_dataset(ds)
    return ds


def write_folder(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` de-identified 16x16 films (label = whether the centre is bright) and labels.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        pixels = rng.integers(0, 100, size=(16, 16)).astype(np.uint8)
        if label:
            pixels[6:10, 6:10] = 255
        write(film(pixels, key=f"{seed}-{i}"), folder / f"img{i:03d}.dcm")
        rows.append((f"img{i:03d}.dcm", label, "test" if i % 4 == 3 else "train"))
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "split"])
        writer.writerows(rows)
    return labels


@pytest.fixture
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the shared DICOM samples are missing: {SAMPLES}")
    return SAMPLES
