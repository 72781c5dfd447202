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
        "baselines": [
            {
                "name": b.name,
                "pooled_accuracy": b.pooled_accuracy,
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
