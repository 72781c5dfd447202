"""``medfed demo --imaging``: hospitals train a pneumonia detector on their own DICOM X-rays.

PneumoniaMNIST's training and validation images are written as DICOM files into four hospital
folders (non-IID: pneumonia prevalence 52% to 91%), de-identified, registered through the DICOM
connector at each node, and a FedAvg study of the CNN plan runs over mutual TLS on loopback.
The final model is scored on the official 624-image test set, which no hospital holds, against
centralised training and each hospital alone (same compute), next to MedMNIST v2's published
centralised numbers.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from rich.table import Table

from medfed.cli.common import medfed_errors, out
from medfed.cli.demo import run_study
from medfed.cli.tables import round_table
from medfed.coordinator.client import AdminClient
from medfed.coordinator.config import load_client_config
from medfed.data.pneumonia import HOSPITALS, load_split, split_hospitals
from medfed.demo.anchors import MEDMNIST_PNEUMONIA
from medfed.demo.consortium import create_consortium
from medfed.demo.imaging import as_dataset, baselines, imaging_study, provision_imaging_nodes
from medfed.training.registry import get_plan


def run_imaging_demo(
    out_dir: Path,
    rounds: int | None,
    workdir: Path | None,
    *,
    hospitals: int = 4,
    limit: int | None = None,
) -> dict[str, dict[str, float]]:
    """Run the study and report it; returns test metrics by model (``federated``, ...)."""
    started = time.monotonic()
    with medfed_errors(), ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medfed-")))
        spec = imaging_study()
        spec = dataclasses.replace(spec, rounds=rounds or spec.rounds, min_nodes=hospitals)
        names = list(HOSPITALS)[:hospitals]
        data = dict(zip(names, split_hospitals(hospitals, seed=spec.seed, limit=limit),
                        strict=True))  # fmt: skip
        consortium = create_consortium(root, names)
        t0 = time.monotonic()
        provision_imaging_nodes(consortium, spec, data)
        files = sum(len(h.train.labels) + len(h.test.labels) for h in data.values())
        took = time.monotonic() - t0
        out.print(f"{files} DICOM files written, de-identified and registered through the DICOM "
                  f"connector at {hospitals} hospitals in {took:.1f} s")  # fmt: skip
        status = run_study(consortium, spec, stack, {n: HOSPITALS[n] for n in names})
        out.print(round_table(status))
        cfg = load_client_config(consortium.admin_config)
        with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as admin:
            final = admin.download(status.model_sha256)
        plan = get_plan(spec.plan, spec.plan_version)
        test = load_split("test")
        holdout = as_dataset(test, test)
        init = plan.init_weights(1, spec.seed, spec.plan_options)
        scores = {"federated": plan.evaluate(final, holdout).metrics}
        labels = {"federated": f"federated, {hospitals} hospitals (this run)"}
        for key, label, weights, _ in baselines(spec, data, init):
            scores[key] = plan.evaluate(weights, holdout).metrics
            labels[key] = label
        _print(scores, labels, len(test.labels))
        elapsed = time.monotonic() - started
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = {"study_id": status.study_id, "state": status.state, "rounds": len(status.rounds),
               "test_images": len(test.labels), "scores": scores, "elapsed_s": elapsed,
               "published": [list(p) for p in MEDMNIST_PNEUMONIA]}  # fmt: skip
        (out_dir / "imaging_metrics.json").write_text(json.dumps(doc, indent=2))
        out.print(f"report: {out_dir / 'imaging_metrics.json'}  ({elapsed:.0f} s)")
        return scores


def _print(scores: dict[str, dict[str, float]], labels: dict[str, str], n: int) -> None:
    table = Table(title=f"PneumoniaMNIST official test set ({n} images, held by no hospital)")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_column("AUC", justify="right")
    for key, metrics in scores.items():
        table.add_row(labels[key], f"{metrics['accuracy']:.3f}", f"{metrics['auc']:.3f}")
    for name, acc, auc in MEDMNIST_PNEUMONIA:
        table.add_row(
            f"[dim]published: {name}[/dim]", f"[dim]{acc:.3f}[/dim]", f"[dim]{auc:.3f}[/dim]"
        )
    out.print(table)
