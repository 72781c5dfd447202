"""The demo's report folder: metrics as JSON and a plot of accuracy per round per hospital."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfed.protocol.v1 import medfed_pb2 as pb


@dataclass(frozen=True)
class Baseline:
    """One model evaluated on every hospital's held-out split."""

    name: str
    pooled_accuracy: float
    per_hospital: Mapping[str, float]
    pooled_auc: float | None = None
    """Exact AUC over all hospitals' test patients at once (not a mean of per-hospital AUCs)."""


METRIC_NAMES = {
    "accuracy, loss": "over all evaluated hospitals' test patients at once (for a mean over "
    "rows this is also the example-weighted mean of the hospitals' values)",
    "<m>_pooled (auc, auprc, balanced_accuracy, sensitivity, specificity, prevalence)": "over "
    "all evaluated hospitals' test patients at once, from the sum of their score histograms "
    "(1000 bins over the predicted probability; the confusion at 0.5 is exact)",
    "<m>_pooled_bin_error": "bound on |histogram value - exact value| that the binning costs",
    "<m>_site_mean (auc, auprc, balanced_accuracy)": "example-weighted mean of each hospital's "
    "own value: not the value over all patients",
    "<m>_min, <m>_max, <m>_std": "spread of the hospitals' own values",
    "per_hospital": "each hospital's metrics on its own test split",
}
"""What each number in metrics.json is (the README's metrics section says the same)."""


def rounds_json(status: pb.StudyStatus) -> list[dict[str, Any]]:
    return [
        {
            "round": r.round,
            "model_sha256": r.model_sha256,
            "selected": r.selected,
            "accepted": r.accepted,
            "duration_s": r.duration_s,
            "metrics": dict(r.metrics),
            "per_hospital": {m.node: dict(m.metrics) for m in r.per_node},
            "rejections": list(r.rejections),
        }
        for r in status.rounds
    ]


def write_report(
    out_dir: Path,
    status: pb.StudyStatus,
    baselines: list[Baseline],
    hospitals: Mapping[str, str],
    extra: Mapping[str, Any],
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "study_id": status.study_id,
        "study": status.spec.name,
        "state": status.state,
        "final_model_sha256": status.model_sha256,
        "rounds": rounds_json(status),
        "metric_names": METRIC_NAMES,
        "baselines": [
            {
                "name": b.name,
                "pooled_accuracy": b.pooled_accuracy,
                "pooled_auc": b.pooled_auc,
                "per_hospital": dict(b.per_hospital),
            }
            for b in baselines
        ],
        **extra,
    }
    json_path = out_dir / "metrics.json"
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    png_path = out_dir / "accuracy_per_round.png"
    plot_accuracy(status, baselines, hospitals, png_path)
    return json_path, png_path


def plot_accuracy(
    status: pb.StudyStatus,
    baselines: list[Baseline],
    hospitals: Mapping[str, str],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    rounds = [r for r in status.rounds if "accuracy" in r.metrics]
    for node, label in hospitals.items():
        xs = [r.round for r in rounds for m in r.per_node if m.node == node]
        ys = [m.metrics["accuracy"] for r in rounds for m in r.per_node if m.node == node]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=label)
    ax.plot(
        [r.round for r in rounds],
        [r.metrics["accuracy"] for r in rounds],
        color="black",
        linewidth=2.5,
        label="global (example-weighted)",
    )
    reference = [b for b in baselines if "pooled" in b.name]
    alone = [b for b in baselines if b.name.endswith("alone")]
    if alone:
        reference.append(max(alone, key=lambda b: b.pooled_accuracy))
    for style, baseline in zip(("--", ":"), reference, strict=False):
        ax.axhline(baseline.pooled_accuracy, color="grey", linestyle=style, label=baseline.name)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (each hospital's held-out split)")
    ax.set_title(f"{status.spec.name}: FedAvg over {len(hospitals)} hospitals")
    ax.set_ylim(0.3, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
