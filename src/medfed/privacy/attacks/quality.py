"""How close a reconstruction is to the image it tries to recover: SSIM and PSNR.

SSIM (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004) compares local structure, which is what a
reader of an X-ray recognises; PSNR is the plain pixel error on a log scale. Geiping et al.
(NeurIPS 2020) and the gradient-inversion literature since report both. With a batch, the
attacker does not know which reconstruction belongs to which image, so each original is scored
against its best match among the reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.errors import AttackError

Images = npt.NDArray[np.floating]


@dataclass(frozen=True)
class Match:
    """For one original image: the reconstruction that resembles it most, and how much."""

    index: int
    ssim: float
    psnr: float


def ssim(original: Images, reconstruction: Images) -> float:
    """Structural similarity of two images in [0, 1] (scikit-image's ``structural_similarity``
    with a 7x7 window, or smaller for a small image)."""
    from skimage.metrics import structural_similarity

    a, b = _gray(original), _gray(reconstruction)
    window = min(7, *a.shape)
    window -= 1 - window % 2  # odd, as SSIM's window must be
    score = structural_similarity(a, b, data_range=1.0, win_size=window)  # type: ignore[no-untyped-call]
    return float(score)


def psnr(original: Images, reconstruction: Images) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (infinite when identical)."""
    a, b = _gray(original), _gray(reconstruction)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def best_matches(originals: Images, reconstructions: Images) -> list[Match]:
    """Each original's best reconstruction by SSIM (several originals may pick the same one)."""
    if len(originals) == 0 or len(reconstructions) == 0:
        raise AttackError("best_matches needs at least one original and one reconstruction")
    out = []
    for original in originals:
        scores = [ssim(original, r) for r in reconstructions]
        best = int(np.argmax(scores))
        out.append(Match(best, scores[best], psnr(original, reconstructions[best])))
    return out


def _gray(image: Images) -> npt.NDArray[np.float64]:
    """A (h, w) float image clipped to [0, 1]; a leading channel axis of 1 is dropped."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise AttackError(f"expected a greyscale image (h, w) or (1, h, w), got {a.shape}")
    return np.clip(a, 0.0, 1.0)
