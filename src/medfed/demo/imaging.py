"""Provision the imaging pilot: each hospital gets its own DICOM folder of chest X-rays.

What a hospital would do, in order: its PACS exports the films (here: PneumoniaMNIST images
written as CR/DX files with synthetic patient names and IDs, each hospital a different scanner
encoding), every file passes the Basic Confidentiality Profile on its way into the research
folder, and the data steward registers that folder through the DICOM connector (which decodes,
PHI-gates and pins it) and approves the study's plan.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from medfed.coordinator.spec import StudySpec, load_spec
from medfed.data.dicom.connector import DicomSource
from medfed.data.dicom.deidentify import deidentify_dataset
from medfed.data.dicom.writer import Encoding, Patient, radiograph, write
from medfed.data.images import ImageDataset
from medfed.data.pneumonia import HOSPITALS, LABEL, HospitalImages, Images, display_pixels
from medfed.data.registry import DatasetRegistry
from medfed.demo.consortium import Consortium
from medfed.demo.heart import baseline_config
from medfed.node.policy import LocalPolicy
from medfed.protocol.tensors import Weights
from medfed.training.registry import get_plan

STUDY_SPEC = Path(__file__).resolve().parent.parent / "data" / "builtin" / "pneumonia_study.toml"
ENCODINGS = {
    "st_marys": Encoding("CR"),
    "riverside": Encoding("CR", monochrome1=True),
    "northgate": Encoding("DX", rescaled=True),
    "lakeview": Encoding("DX", monochrome1=True, rescaled=True),
}
IMAGE_SIZE = 28


def imaging_study() -> StudySpec:
    return load_spec(STUDY_SPEC)


def write_hospital_folder(folder: Path, node: str, data: HospitalImages, seed: int = 0) -> Path:
    """Write ``data`` as de-identified DICOM files under ``folder``; returns the labels CSV
    (columns file, pneumonia, split)."""
    rng = np.random.default_rng([seed, len(node), *node.encode()])
    rows: list[tuple[str, int, str]] = []
    for split, images in (("train", data.train), ("test", data.test)):
        for i in range(len(images.labels)):
            name = f"{split}/{i:05d}.dcm"
            born = date(2010, 1, 1) + timedelta(days=int(rng.integers(0, 3650)))
            patient = Patient(
                patient_id=f"{node.upper()}-{split}-{i:05d}",
                name=f"SYNTHETIC^{node.upper()}{split.upper()}{i:05d}",
                birth_date=born.strftime("%Y%m%d"),
                sex="F" if rng.random() < 0.5 else "M",
                institution=HOSPITALS.get(node, node),
            )
            day = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
            ds = radiograph(images.pixels[i], patient, ENCODINGS.get(node, Encoding()),
                            key=f"{node}/{name}", day=day)  # fmt: skip
            deidentify_dataset(ds)
            write(ds, folder / name)
            rows.append((name, int(images.labels[i]), split))
    labels = folder / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", LABEL, "split"])
        writer.writerows(rows)
    return labels


def provision_imaging_nodes(
    consortium: Consortium, spec: StudySpec, data: dict[str, HospitalImages]
) -> None:
    """Each hospital: write its folder, register it through the DICOM connector, approve."""
    for node in consortium.node_configs:
        if node not in data:
            continue
        state = consortium.node_state(node)
        folder = state.parent / "dicom"
        labels = write_hospital_folder(folder, node, data[node])
        source = DicomSource(folder, labels, LABEL, "split", IMAGE_SIZE)
        DatasetRegistry(state).add_dicom(spec.dataset, source, now=time.time())
        LocalPolicy(state).approve(spec.plan, spec.plan_version)


def as_dataset(train: Images, test: Images) -> ImageDataset:
    return ImageDataset(
        label=LABEL,
        x_train=display_pixels(train),
        y_train=train.labels.astype(np.float32),
        x_test=display_pixels(test),
        y_test=test.labels.astype(np.float32),
    )


def pooled(data: Mapping[str, HospitalImages]) -> ImageDataset:
    """Every hospital's images in one place: what centralised training would need."""
    parts = list(data.values())

    def join(pick: Callable[[HospitalImages], Images]) -> Images:
        return Images(
            np.concatenate([pick(h).pixels for h in parts]),
            np.concatenate([pick(h).labels for h in parts]),
        )

    return as_dataset(join(lambda h: h.train), join(lambda h: h.test))


def baselines(
    spec: StudySpec, data: Mapping[str, HospitalImages], init: Weights
) -> list[tuple[str, str, Weights, float]]:
    """(key, label, weights, seconds) of centralised training and of each hospital alone, each
    with the federation's compute (rounds x local epochs passes over its data)."""
    plan = get_plan(spec.plan, spec.plan_version)
    config = baseline_config(spec)
    runs = [("centralised", "centralised (pooled images)", pooled(data))]
    runs += [
        (node, f"{HOSPITALS.get(node, node)} alone", as_dataset(h.train, h.test))
        for node, h in data.items()
    ]
    out = []
    for key, label, dataset in runs:
        started = time.perf_counter()
        weights = plan.train(init, dataset, config).weights
        out.append((key, label, weights, time.perf_counter() - started))
    return out
