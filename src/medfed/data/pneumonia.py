"""PneumoniaMNIST (MedMNIST v2): paediatric chest X-rays at 28x28, normal = 0, pneumonia = 1.

The built-in imaging pilot: ``split_hospitals`` deals the official training and validation
images out to hospitals with different pneumonia prevalence (a non-IID split like real referral
patterns: a children's ward sees mostly sick children, a screening clinic mostly healthy ones).
The official test set (624 images) stays with the researcher as the held-out evaluation.
Attribution and licence (CC BY 4.0): builtin/pneumoniamnist/SOURCES.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medfed.errors import DatasetError

NPZ = Path(__file__).resolve().parent / "builtin" / "pneumoniamnist" / "pneumoniamnist_28.npz"
LABEL = "pneumonia"
HOSPITALS = {
    "st_marys": "St Mary's",
    "riverside": "Riverside",
    "northgate": "Northgate",
    "lakeview": "Lakeview",
}
NORMAL_SHARE = (0.40, 0.30, 0.20, 0.10)
PNEUMONIA_SHARE = (0.15, 0.20, 0.30, 0.35)
"""Each hospital's share of all normal and of all pneumonia images: prevalence ~52% at the
first hospital up to ~91% at the fourth, against 74% overall."""


@dataclass(frozen=True)
class Images:
    pixels: npt.NDArray[np.uint8]  # (n, 28, 28)
    labels: npt.NDArray[np.uint8]  # (n,) 0/1

    def subset(self, index: npt.NDArray[np.int64]) -> Images:
        return Images(self.pixels[index], self.labels[index])


@dataclass(frozen=True)
class HospitalImages:
    train: Images
    test: Images


def load_split(split: str) -> Images:
    """One official split: ``train`` (4708), ``val`` (524) or ``test`` (624)."""
    if split not in ("train", "val", "test"):
        raise DatasetError(f"PneumoniaMNIST has splits train, val and test, not {split!r}")
    with np.load(NPZ, allow_pickle=False) as archive:  # arrays only, never pickled objects
        return Images(archive[f"{split}_images"], archive[f"{split}_labels"].reshape(-1))


def split_hospitals(
    hospitals: int = 4,
    *,
    seed: int = 0,
    limit: int | None = None,
    shares: tuple[Sequence[float], Sequence[float]] = (NORMAL_SHARE, PNEUMONIA_SHARE),
) -> list[HospitalImages]:
    """Deal train (local training) and val (local test) images out with skewed prevalence:
    hospital i gets ``shares[0][i]`` of the normal and ``shares[1][i]`` of the pneumonia images
    (renormalized over the first ``hospitals``); ``limit`` caps each one's training images."""
    if not 2 <= hospitals <= min(len(shares[0]), len(shares[1])):
        raise DatasetError(f"between 2 and {len(shares[0])} hospitals, got {hospitals}")
    rng = np.random.default_rng(seed)
    normal = np.array(shares[0][:hospitals]) / sum(shares[0][:hospitals])
    sick = np.array(shares[1][:hospitals]) / sum(shares[1][:hospitals])
    parts = [_deal(load_split(s), normal, sick, rng) for s in ("train", "val")]
    out = []
    for train, test in zip(*parts, strict=True):
        kept = train
        if limit is not None:
            kept = train.subset(np.sort(rng.permutation(len(train.labels))[:limit]))
        out.append(HospitalImages(kept, test))
    return out


def _deal(
    images: Images, normal: npt.NDArray[np.float64], sick: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> list[Images]:  # fmt: skip
    shares = []
    for label, weights in ((0, normal), (1, sick)):
        index = rng.permutation(np.flatnonzero(images.labels == label))
        cuts = np.round(np.cumsum(weights)[:-1] * len(index)).astype(int)
        shares.append(np.split(index, cuts))
    return [images.subset(np.sort(np.concatenate(pair))) for pair in zip(*shares, strict=True)]


def display_pixels(images: Images) -> npt.NDArray[np.float32]:
    """(n, 1, 28, 28) in [0, 1], each image min-max scaled: exactly what the DICOM connector
    makes of these images written as DICOM files, without writing them (the held-out test set
    the researcher evaluates on; tests/data/dicom checks the two agree)."""
    x = images.pixels.astype(np.float32)
    low = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (x - low) / np.maximum(span, 1.0), 0.0)
    return scaled[:, None].astype(np.float32)
