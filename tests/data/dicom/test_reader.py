from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfed.data.dicom.reader import DicomReadError, read_radiograph
from medfed.data.dicom.writer import Encoding
from medfed.data.pneumonia import Images, display_pixels, load_split
from tests.data.dicom.conftest import film

EXPECTED = {
    "CR_cspine_16x16_6154.dcm": None,
    "RG1_J2KI.dcm": None,  # the CR chest film, JPEG 2000
    "RG3_J2KI.dcm": None,
    "CT_small.dcm": "modality CT is not a radiograph",
    "MR_small.dcm": "modality MR is not a radiograph",
    "US1_J2KI.dcm": "modality US is not a radiograph",
    "waveform_ecg.dcm": "no pixel data (a waveform",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_sample_loads_or_is_refused_with_its_reason(samples: Path, name: str) -> None:
    reason = EXPECTED[name]

    if reason is None:
        image = read_radiograph(samples / name, 32)
        assert image.pixels.shape == (32, 32) and image.pixels.dtype == np.float32
        assert 0.0 <= image.pixels.min() < 0.2 and 0.8 < image.pixels.max() <= 1.0
    else:
        with pytest.raises(DicomReadError) as info:
            read_radiograph(samples / name, 32)
        assert reason in info.value.reason


def test_every_sample_is_covered(samples: Path) -> None:
    assert {p.name for p in samples.glob("*.dcm")} == set(EXPECTED)


def test_the_jpeg2000_chest_film_decodes_as_a_chest(samples: Path) -> None:
    image = read_radiograph(samples / "RG1_J2KI.dcm", 64).pixels

    # MONOCHROME1 inverted: air outside the body is dark, the spine down the middle bright
    assert image[:, :4].mean() < image[:, 28:36].mean()


def test_a_colour_image_is_refused_even_when_its_modality_is_allowed(samples: Path) -> None:
    with pytest.raises(DicomReadError, match="colour image"):
        read_radiograph(samples / "US1_J2KI.dcm", 32, modalities={"US"})


def test_monochrome1_is_inverted() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)

    same_values = film(pixels)
    same_values.PhotometricInterpretation = "MONOCHROME1"

    plain = read_radiograph(_bytes(film(pixels)), 16).pixels
    inverted = read_radiograph(_bytes(same_values), 16).pixels
    exported = read_radiograph(_bytes(film(pixels, encoding=Encoding(monochrome1=True))), 16)

    np.testing.assert_allclose(plain, pixels / 255.0, atol=1e-6)
    np.testing.assert_allclose(inverted, 1.0 - plain, atol=1e-6)
    np.testing.assert_allclose(exported.pixels, plain, atol=1e-6)  # stored 255 - p, displayed p


def test_rescale_slope_and_intercept_are_applied_before_the_window() -> None:
    ds = film(np.zeros((16, 16), dtype=np.uint8))
    raw = np.linspace(0, 1000, 256).reshape(16, 16).astype(np.uint16)
    ds.PixelData = raw.astype("<u2").tobytes()
    ds.BitsStored, ds.HighBit = 12, 11
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-1000"  # stored 0..1000 -> -1000..1000
    ds.WindowCenter, ds.WindowWidth = "0", "1000"  # in rescaled units: -500..500 visible

    image = read_radiograph(_bytes(ds), 16).pixels

    modality = raw * 2.0 - 1000.0
    assert np.all(image[modality <= -500] == 0.0)
    assert np.all(image[modality >= 500] == 1.0)
    middle = (modality > -400) & (modality < 400)
    np.testing.assert_allclose(image[middle], (modality[middle] + 500) / 1000, atol=0.01)


def test_centre_crop_keeps_proportions_and_resizes() -> None:
    pixels = np.zeros((16, 32), dtype=np.uint8)
    pixels[:, 8:24] = 200  # the central square is bright, the side bands dark
    pixels[0, 8] = 0

    image = read_radiograph(_bytes(film(pixels)), 8).pixels

    assert image.shape == (8, 8)
    assert image[1:, 1:].min() > 0.9


def test_a_truncated_file_says_what_is_wrong() -> None:
    data = _bytes(film(np.full((16, 16), 7, dtype=np.uint8)))

    with pytest.raises(DicomReadError) as info:
        read_radiograph(data[: len(data) - 200], 16)

    assert "pixel data" in info.value.reason or "unreadable" in info.value.reason


def test_a_file_that_is_not_dicom_is_named_as_such() -> None:
    with pytest.raises(DicomReadError, match="not a DICOM file"):
        read_radiograph(b"label,file\n1,a.dcm\n" * 20, 16)


@pytest.mark.parametrize(
    "encoding",
    [Encoding(), Encoding(monochrome1=True), Encoding("DX", rescaled=True),
     Encoding("DX", monochrome1=True, rescaled=True)],
    ids=["cr", "monochrome1", "dx-12bit", "dx-12bit-monochrome1"],
)  # fmt: skip
def test_the_demo_holdout_matches_what_the_connector_reads(encoding: Encoding) -> None:
    test = load_split("test")
    few = Images(test.pixels[:20], test.labels[:20])

    read = np.stack([read_radiograph(_bytes(film(p, encoding=encoding)), 28).pixels
                     for p in few.pixels])  # fmt: skip

    np.testing.assert_array_equal(read, display_pixels(few)[:, 0])


def _bytes(ds: object) -> bytes:
    import io

    from pydicom.dataset import Dataset

    assert isinstance(ds, Dataset)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_jpeg_ls_compressed_film_decodes_losslessly() -> None:
    from pydicom.uid import JPEGLSLossless

    pixels = np.arange(784, dtype=np.uint32).reshape(28, 28).astype(np.uint8)
    ds = film(pixels)
    ds.compress(JPEGLSLossless)  # pyjpegls (CharLS), the decoder the connector installs

    image = read_radiograph(_bytes(ds), 28).pixels

    assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless
    np.testing.assert_allclose(image, (pixels - 0.0) / 255.0, atol=1e-6)
