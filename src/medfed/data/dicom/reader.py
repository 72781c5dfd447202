"""One DICOM radiograph in, one float32 image in [0, 1] out -- or the reason it cannot be used.

The display pipeline of PS3.3 C.11 in order: decode (pydicom and its pixel-data plugins:
JPEG 2000 via pylibjpeg-openjpeg or Pillow), Modality LUT (Rescale Slope/Intercept or a Modality
LUT Sequence), VOI LUT (a VOI LUT Sequence, or Window Center/Width), then MONOCHROME1 inverted so
that 0 is always black, then min-max scaled, centre-cropped to a square and resized. A radiologist
reads the windowed image; a model trained at one hospital should see the same greys at another.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

RADIOGRAPHS = frozenset({"CR", "DX"})
"""Computed and digital radiography: the modalities of a chest film."""


class DicomReadError(Exception):
    """A file that cannot become a training image; ``reason`` says why, for the data steward."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Radiograph:
    """A decoded image and the header it came from (pixel data dropped to free memory)."""

    pixels: npt.NDArray[np.float32]
    header: pydicom.Dataset


def read_radiograph(
    source: Path | bytes, size: int, modalities: Collection[str] = RADIOGRAPHS
) -> Radiograph:
    """Decode ``source`` (a path or the file's bytes) into a ``size`` x ``size`` image."""
    ds = _parse(source)
    _check_image(ds, modalities)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # plugin errors are of many types; all mean "cannot decode"
        syntax = ds.file_meta.get("TransferSyntaxUID")
        name = getattr(syntax, "name", str(syntax))
        raise DicomReadError(f"cannot decode pixel data ({name}): {_first_line(exc)}") from None
    if raw.ndim != 2:
        raise DicomReadError(f"pixel array has shape {raw.shape}, expected one 2-D frame")
    pixels = display_values(raw, ds)
    del ds.PixelData
    return Radiograph(pixels=square_resize(pixels, size), header=ds)


def display_values(raw: npt.NDArray[np.generic], ds: pydicom.Dataset) -> npt.NDArray[np.float32]:
    """Stored values -> presentation greys in [0, 1], 0 black (PS3.3 C.11 pipeline)."""
    values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
    values = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DicomReadError("pixel values are not finite after the modality/VOI LUTs")
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1: the minimum value is displayed white
    return scaled.astype(np.float32)


def square_resize(pixels: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
    """Centre-crop to a square (anatomy keeps its proportions), then resize with Pillow's
    bilinear filter, which widens its support when shrinking (antialiased)."""
    h, w = pixels.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(pixels[top : top + side, left : left + side])
    if side == size:
        return square
    image = Image.fromarray(square, mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)


def _parse(source: Path | bytes) -> pydicom.Dataset:
    import io

    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        return pydicom.dcmread(handle)
    except InvalidDicomError:
        raise DicomReadError("not a DICOM file (no 'DICM' marker after the preamble)") from None
    except Exception as exc:  # truncated or garbled headers surface as many exception types
        raise DicomReadError(f"unreadable DICOM header: {_first_line(exc)}") from None


def _check_image(ds: pydicom.Dataset, modalities: Collection[str]) -> None:
    modality = str(ds.get("Modality", "") or "")
    if "PixelData" not in ds:
        what = "a waveform" if "WaveformSequence" in ds else "no image"
        raise DicomReadError(f"no pixel data ({what}; modality {modality or 'unknown'})")
    if modality not in modalities:
        raise DicomReadError(
            f"modality {modality or 'missing'} is not a radiograph this dataset accepts "
            f"({', '.join(sorted(modalities))})"
        )
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(
            f"colour image ({photometric or 'no PhotometricInterpretation'}); "
            "expected greyscale MONOCHROME1 or MONOCHROME2"
        )
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise DicomReadError(f"multi-frame image ({ds.NumberOfFrames} frames); expected one")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
