"""Published results the demos print beside their own: FLamby's Fed-Heart-Disease benchmark and
MedMNIST v2's centralised PneumoniaMNIST baselines."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

FLAMBY_HEART = (
    Path(__file__).resolve().parent.parent
    / "data"
    / "builtin"
    / "flamby_heart_disease"
    / "summary.csv"
)
MEDMNIST_PNEUMONIA = (
    ("MedMNIST v2 ResNet-18 (28), centralised", 0.854, 0.944),
    ("MedMNIST v2 ResNet-50 (224), centralised", 0.884, 0.962),
)
"""(model, test accuracy, test AUC) on PneumoniaMNIST, Yang et al., Scientific Data 10:41 (2023),
as quoted in the issue that asked for the imaging benchmark."""


@dataclass(frozen=True)
class PublishedResult:
    method: str
    pooled_test: float
    mean_over_local_tests: float


def flamby_heart_results(methods: tuple[str, ...] = ()) -> list[PublishedResult]:
    """FLamby's rows for Fed-Heart-Disease (all, or those named, in file order)."""
    with FLAMBY_HEART.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dataset"] == "heart_disease"]
    return [
        PublishedResult(r["method"], float(r["pooled_test"]), float(r["mean_over_local_tests"]))
        for r in rows
        if not methods or r["method"] in methods
    ]
